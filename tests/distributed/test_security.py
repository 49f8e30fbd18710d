"""TLS, passwords and ACL users, and what bad input does: real ``redis-server`` processes
(TLS-only ones with certificates made by ``trustme`` at test time), real worker processes for
the command line, raw ``XADD`` for entries no caller would write."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import traceback
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
import trustme
from pydantic import BaseModel

from penguiflow import Message, Node, NodePolicy, create
from penguiflow.distributed import (
    RESULTS_DEAD_LETTERS,
    BackendUnavailable,
    EnvelopeError,
    EnvelopeTooLarge,
    RedisBackend,
    RemoteFlow,
    serve,
)
from penguiflow.distributed._connection import (
    CONNECT_TIMEOUT_S,
    _redacted,
    redact,
    socket_timeout_s,
)
from penguiflow.distributed._envelope import Envelope
from penguiflow.errors import FlowError

from .conftest import need_redis_server
from .flows import Item, chain
from .helpers import msg, served, until
from .servers import REPO, RedisServer, Worker, child_env, free_port, worker_command

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

FLOWS = str(REPO / "tests" / "distributed" / "flows.py")
PASSWORD = "Pw-default-7f3e"
ALICE_PASSWORD = "Pw-alice-91c2"
WRONG = "Pw-wrong-55aa"
SECRETS = (PASSWORD, ALICE_PASSWORD, WRONG)


class Extra(BaseModel):
    v: int


class Undeclared(BaseModel):
    v: int


class TlsRedisServer(RedisServer):
    """A TLS-only ``redis-server`` (``--port 0``, ``--tls-port``) with a certificate for
    127.0.0.1 signed by ``ca``; its URL names the CA the way redis-py takes it."""

    def __init__(self, directory: Path, ca: trustme.CA, *, password: str | None = None) -> None:
        super().__init__(directory, password=password)
        self.ca_file = directory / "ca.pem"
        cert, key = directory / "server.pem", directory / "server.key"
        issued = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(self.ca_file))
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        self.extra = [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(self.ca_file),
            "--tls-auth-clients",
            "no",
        ]
        self.context = ssl.create_default_context(cafile=str(self.ca_file))

    def url_with(self, ca_file: Path | None) -> str:
        auth = f":{self.password}@" if self.password else ""
        query = f"?ssl_ca_certs={quote(str(ca_file))}" if ca_file is not None else ""
        return f"rediss://{auth}127.0.0.1:{self.port}/0{query}"

    @property
    def url(self) -> str:
        return self.url_with(self.ca_file)

    def open_socket(self) -> socket.socket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=0.2)
        try:
            return self.context.wrap_socket(raw, server_hostname="127.0.0.1")
        except BaseException:
            raw.close()
            raise


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsRedisServer]:
    need_redis_server()
    server = TlsRedisServer(tmp_path, trustme.CA(), password=PASSWORD)
    try:
        server.start()
        yield server
    finally:
        server.kill()


@pytest.fixture
def acl_server(tmp_path: Path) -> Iterator[RedisServer]:
    """``--requirepass`` for the default user and an ACL user ``alice``."""
    need_redis_server()
    user = ["--user", "alice", "on", f">{ALICE_PASSWORD}", "~*", "&*", "+@all"]
    server = RedisServer(tmp_path, password=PASSWORD, extra=user)
    try:
        server.start()
        yield server
    finally:
        server.kill()


def _alice_url(server: RedisServer, password: str = ALICE_PASSWORD) -> str:
    return f"redis://alice:{password}@127.0.0.1:{server.port}/0"


def _leaks(texts: list[str]) -> list[str]:
    return [text for text in texts if any(secret in text for secret in SECRETS)]


def _texts_of(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


async def _identity(message: Message, _ctx: Any) -> Message:
    return message


# -- TLS ----------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_a_worker_process_and_a_caller_talk_over_tls(tls_server: TlsRedisServer) -> None:
    """The worker is ``penguiflow worker --redis rediss://...?ssl_ca_certs=...``; the caller
    runs here. The server has no plain-text port: a ``redis://`` URL is refused."""
    flow, registry = chain()
    backend = RedisBackend(tls_server.url, flow_id="tls")
    worker = await Worker(FLOWS + ":chain", tls_server.url, "--flow-id", "tls").start()
    try:
        async with RemoteFlow(flow, backend, registry=registry) as remote:
            await remote.emit(msg(Item(n=1)), trace_id="over-tls")
            answer = await remote.fetch(trace_id="over-tls")
        assert answer.payload == Item(n=1002) and answer.trace_id == "over-tls"
        assert worker.process is not None
        worker.process.send_signal(signal.SIGTERM)
        await worker.wait_line("stopped")
        await worker.drain_output()
    finally:
        await worker.reap()
        await backend.close()
    ready = next(line for line in worker.lines if "ready" in line)
    assert f"redis=rediss://:***@127.0.0.1:{tls_server.port}/0?ssl_ca_certs=" in ready
    assert not _leaks(worker.lines)
    plain = RedisBackend(f"redis://:{PASSWORD}@127.0.0.1:{tls_server.port}/0")
    with pytest.raises(BackendUnavailable):
        await plain.connect()


async def test_a_wrong_ca_fails_at_once_naming_the_server(
    tls_server: TlsRedisServer, tmp_path: Path
) -> None:
    """A CA that did not sign the server's certificate (or none: the system's) fails the
    handshake: ``BackendUnavailable`` naming host:port, for a worker and a caller alike."""
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    flow = create(Node(_identity, name="n", policy=NodePolicy(validate="none")).to())
    failures: list[BackendUnavailable] = []
    async with asyncio.timeout(CONNECT_TIMEOUT_S + 5):  # refused in the handshake: no wait
        for url in (tls_server.url_with(other), tls_server.url_with(None)):
            backend = RedisBackend(url)
            with pytest.raises(BackendUnavailable) as by_worker:
                await serve(flow, backend)
            with pytest.raises(BackendUnavailable) as by_caller:
                await RemoteFlow(flow, backend).start()
            failures += [by_worker.value, by_caller.value]
    for failure in failures:
        assert f"127.0.0.1:{tls_server.port}" in str(failure)
        assert "CERTIFICATE_VERIFY_FAILED" in str(failure)
        assert failure.url.startswith("rediss://:***@127.0.0.1:")
        assert not _leaks(_texts_of(failure))


# -- passwords and ACL users ----------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_passwords_and_acl_users_work_and_never_show(
    acl_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """End to end with ``--requirepass`` and with an ACL user, including a server restart
    while the worker runs (it logs, reconnects with its credentials and goes on); then wrong
    passwords. Neither password, nor the wrong one, shows in any log record, event,
    ``repr``/``describe``/``url`` of a backend, or error."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="penguiflow")
    events: list[str] = []

    async def record(event: Any) -> None:
        events.append(repr(event.to_payload()))

    flow = create(
        Node(_identity, name="n", policy=NodePolicy(validate="none")).to(), middlewares=[record]
    )
    default, alice = acl_server.url, _alice_url(acl_server)
    shown: list[str] = []
    for url, flow_id in ((default, "pw"), (alice, "acl")):
        backend = RedisBackend(url, flow_id=flow_id)
        shown += [repr(backend), backend.describe(), backend.url]
        async with served(flow, backend) as remote:
            await remote.emit(msg("x"), trace_id=flow_id)
            assert (await remote.fetch(trace_id=flow_id)).payload == "x"
            if flow_id == "acl":
                client = await backend.connect()
                assert await client.acl_whoami() == "alice"
                acl_server.kill()
                await until(lambda: _logged(caplog, "distributed_redis_unavailable"))
                acl_server.start()
                await remote.emit(msg("after restart"), trace_id="again")
                assert (await remote.fetch(trace_id="again")).payload == "after restart"
    assert "alice:***@" in RedisBackend(alice).url and ":***@" in RedisBackend(default).url

    errors: list[BackendUnavailable] = []
    for url in (default.replace(PASSWORD, WRONG), _alice_url(acl_server, WRONG)):
        backend = RedisBackend(url)
        shown += [repr(backend), backend.describe(), backend.url]
        with pytest.raises(BackendUnavailable) as by_worker:
            await serve(flow, backend)
        with pytest.raises(BackendUnavailable) as by_caller:
            await RemoteFlow(flow, backend).start()
        with pytest.raises(BackendUnavailable) as by_admin:
            await backend.dead_letters("n")
        errors += [by_worker.value, by_caller.value, by_admin.value]
    for error in errors:
        assert f"127.0.0.1:{acl_server.port}" in str(error)
        assert "invalid username-password pair" in str(error)
    assert "alice:***@" in str(errors[-1])

    logged = [
        record.getMessage() + repr(record.__dict__) + (record.exc_text or "")
        for record in caplog.records
    ]
    assert await _logged(caplog, "distributed_redis_unavailable")
    assert any(f"127.0.0.1:{acl_server.port}" in text for text in logged)
    assert events and shown
    assert not _leaks(logged)
    assert not _leaks(events)
    assert not _leaks(shown)
    assert not _leaks([text for error in errors for text in _texts_of(error)])


async def _logged(caplog: pytest.LogCaptureFixture, event: str) -> bool:
    return any(getattr(record, "event", None) == event for record in caplog.records)


@pytest.mark.timeout(60)
async def test_the_worker_command_never_prints_a_password(acl_server: RedisServer) -> None:
    """``penguiflow worker`` at debug level: with the right password (it serves a message and
    stops), with a wrong one (exit 2, the server named), with a URL that is not one (exit 2,
    no traceback)."""
    worker = Worker(FLOWS + ":chain", _alice_url(acl_server), "--log-level", "debug")
    flow, registry = chain()
    backend = RedisBackend(_alice_url(acl_server))
    try:
        await worker.start()
        ready = worker.lines[-1]
        async with RemoteFlow(flow, backend, registry=registry) as remote:
            await remote.emit(msg(Item(n=2)), trace_id="cli")
            assert (await remote.fetch(trace_id="cli")).payload == Item(n=1003)
        assert worker.process is not None
        worker.process.send_signal(signal.SIGTERM)
        await worker.wait_line("stopped")
        await worker.drain_output()
    finally:
        await worker.reap()
        await backend.close()
    assert f"redis=redis://alice:***@127.0.0.1:{acl_server.port}/0" in ready
    assert any("node_success" in line for line in worker.lines)  # debug logs were on

    wrong = await _run(*worker_command(FLOWS + ":chain", _alice_url(acl_server, WRONG)))
    assert wrong[0] == 2
    assert f"cannot reach Redis at redis://alice:***@127.0.0.1:{acl_server.port}/0" in wrong[1]
    assert "invalid username-password pair" in wrong[1]

    malformed = await _run(*worker_command(FLOWS + ":chain", f"redis//alice:{WRONG}@x:1/0"))
    assert malformed[0] == 2
    assert "RedisBackend url is not a Redis URL: redis//alice:***@x:1/0" in malformed[1]
    assert "Traceback" not in malformed[1]
    assert not _leaks([*worker.lines, wrong[1], malformed[1]])


async def _run(*command: str) -> tuple[int, str]:
    """Run ``command`` to its end; its exit status and its stdout and stderr together."""
    process = await asyncio.create_subprocess_exec(
        *command,
        "--log-level",
        "debug",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=child_env(),
        cwd=str(REPO),
    )
    try:
        async with asyncio.timeout(25):
            out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode()


# -- envelope size --------------------------------------------------------------------------------


async def test_an_oversized_envelope_is_refused_naming_limit_size_node_and_trace(
    redis_server: RedisServer,
) -> None:
    """At the caller's emit, and at a node's output (the node's call fails: the caller gets
    a ``FlowError`` and the input is committed, not dead-lettered or left pending)."""

    async def grow(message: Message, _ctx: Any) -> Message:
        return message.model_copy(update={"payload": "x" * message.payload})

    node = Node(grow, name="grow", policy=NodePolicy(validate="none", max_retries=0))
    flow = create(node.to())
    backend = RedisBackend(redis_server.url, flow_id="size", max_envelope_bytes=600)
    ingress = backend.keys.edge(None, "grow")
    async with served(flow, backend) as remote:
        with pytest.raises(EnvelopeTooLarge) as refused:
            await remote.emit(msg("y" * 1000), trace_id="big-in")
        await remote.emit(msg(800), trace_id="big-out")
        failed = await remote.fetch(trace_id="big-out")
        await remote.emit(msg(10), trace_id="small")
        assert (await remote.fetch(trace_id="small")).payload == "x" * 10
        client = await backend.connect()
        assert await client.xlen(ingress) == 0
        assert (await client.xpending(ingress, "grow"))["pending"] == 0
    assert refused.value.limit == 600 and refused.value.size > 1000
    text = str(refused.value)
    assert f"{refused.value.size} bytes" in text and "limit of 600 bytes" in text
    assert "emit to grow (trace big-in)" in text
    assert isinstance(failed, FlowError)
    assert (failed.code, failed.node_name, failed.trace_id) == ("NODE_EXCEPTION", "grow", "big-out")
    assert "node grow output to the caller (trace big-out)" in failed.message
    assert "over the limit of 600 bytes" in failed.message
    assert await backend.dead_letters("grow") == []
    await backend.close()


# -- bad input --------------------------------------------------------------------------------


async def test_bad_entries_in_an_edge_stream_are_dead_lettered_and_the_rest_finish(
    redis_server: RedisServer,
) -> None:
    """Raw entries on the ``first -> second`` stream: garbage, no envelope field, JSON that
    is not an envelope, an unknown payload type, an oversized envelope, and one good one.
    Each bad one is dead-lettered with a reason naming the stream and its entry id (its text
    kept), never reaches ``second``; the good ones before and after all finish."""
    called: list[str | None] = []

    async def first(message: Message, _ctx: Any) -> Message:
        return message

    async def second(message: Message, _ctx: Any) -> Message:
        called.append(message.trace_id)
        return message

    policy = NodePolicy(validate="none")
    one, two = Node(first, name="first", policy=policy), Node(second, name="second", policy=policy)
    flow = create(one.to(two), two.to())
    backend = RedisBackend(redis_server.url, flow_id="garbage", max_envelope_bytes=2000)
    edge = backend.keys.edge("first", "second")
    async with served(flow, backend) as remote:
        for i in range(3):
            await remote.emit(msg(i), trace_id=f"before-{i}")
            assert (await remote.fetch(trace_id=f"before-{i}")).payload == i

        def envelope(trace: str, payload: Any, type_: str | None = None) -> str:
            body = msg(payload, trace_id=trace).model_dump(mode="json")
            return Envelope(
                id=trace,
                kind="message",
                reply_to=remote.results,
                trace_id=trace,
                type=type_,
                body=body,
            ).model_dump_json()

        bad = {
            "undecodable envelope": {"e": "not json"},
            "undecodable envelope (1": {"x": "no envelope field"},
            "undecodable envelope (3": {"e": '{"id": 1}'},
            "NoSuchModel is not in the flow's registry": {
                "e": envelope("unknown", {"a": 1}, "NoSuchModel")
            },
            "over the limit of 2000 bytes": {"e": envelope("huge", "z" * 3000)},
        }
        client = await backend.connect()
        added = {reason: await client.xadd(edge, fields) for reason, fields in bad.items()}
        waiter = asyncio.create_task(remote.fetch(trace_id="raw-good"))
        await asyncio.sleep(0)  # the waiter registers the trace before its result can arrive
        await client.xadd(edge, {"e": envelope("raw-good", "fine")})
        assert (await waiter).payload == "fine"
        for i in range(3):
            await remote.emit(msg(i), trace_id=f"after-{i}")
            assert (await remote.fetch(trace_id=f"after-{i}")).payload == i
        await until(lambda: _dead_lettered(backend, "second", len(bad)))
        assert await client.xlen(edge) == 0
        assert (await client.xpending(edge, "second"))["pending"] == 0
    letters = {letter.entry_id: letter for letter in await backend.dead_letters("second")}
    assert sorted(letters) == sorted(added.values())
    for reason, entry_id in added.items():
        letter = letters[entry_id]
        assert letter.stream == edge and letter.node == "second"
        assert f"stream {edge} entry {entry_id}" in letter.reason
        assert reason in letter.reason
        assert letter.envelope == bad[reason].get("e", "")
    expected = [f"before-{i}" for i in range(3)] + ["raw-good"] + [f"after-{i}" for i in range(3)]
    assert sorted(str(each) for each in called) == sorted(expected)
    await backend.close()


async def _dead_lettered(backend: RedisBackend, node: str, wanted: int) -> bool:
    return len(await backend.dead_letters(node)) >= wanted


async def test_payload_types_one_side_does_not_know_are_named_not_dropped(
    redis_server: RedisServer,
) -> None:
    """A type the caller declares and the worker does not: dead-lettered by the worker. A
    node's output of an undeclared type: the caller gets the ``FlowError``. A result whose
    type the caller does not know: its fetch raises ``EnvelopeError``, the result waits in the
    dead letters, and re-driven to a caller that knows it, it is fetched."""

    async def make(message: Message, _ctx: Any) -> Message:
        kind = message.payload
        payload = (
            Undeclared(v=1) if kind == "undeclared" else Extra(v=2) if kind == "extra" else kind
        )
        return message.model_copy(update={"payload": payload})

    flow = create(Node(make, name="make", policy=NodePolicy(validate="none", max_retries=0)).to())
    plain = RedisBackend(redis_server.url, flow_id="types")
    knowing = RedisBackend(redis_server.url, flow_id="types", types=[Extra])
    async with served(flow, plain) as remote, RemoteFlow(flow, knowing) as caller:
        await caller.emit(msg(Extra(v=1)), trace_id="unknown-to-worker")
        await until(lambda: _dead_lettered(plain, "make", 1))
        await remote.emit(msg("undeclared"), trace_id="undeclared")
        failed = await remote.fetch(trace_id="undeclared")
    [letter] = await plain.dead_letters("make")
    assert "Extra is not in the flow's registry" in letter.reason
    assert f"entry {letter.entry_id}" in letter.reason
    assert isinstance(failed, FlowError) and failed.code == "NODE_EXCEPTION"
    assert "Undeclared is not in the flow's registry" in failed.message

    async with served(flow, knowing), RemoteFlow(flow, plain, client_id="c") as unaware:
        await unaware.emit(msg("extra"), trace_id="extra")
        with pytest.raises(EnvelopeError) as refused:
            await unaware.fetch(trace_id="extra")
        await unaware.emit(msg("plain"), trace_id="plain")
        assert (await unaware.fetch(trace_id="plain")).payload == "plain"
        client = await plain.connect()
        assert await client.xlen(unaware.results) == 0
    [result] = await plain.dead_letters(RESULTS_DEAD_LETTERS)
    assert "Extra is not in the flow's registry" in str(refused.value)
    assert f"result stream {unaware.results} entry {result.entry_id}" in str(refused.value)
    assert result.stream == unaware.results and result.reason == str(refused.value)
    async with RemoteFlow(flow, knowing, client_id="c") as aware:
        assert await knowing.redrive(RESULTS_DEAD_LETTERS) == 1
        assert (await aware.fetch(trace_id=None)).payload == Extra(v=2)
        client = await knowing.connect()
        garbage = await client.xadd(aware.results, {"e": "not an envelope"})
        with pytest.raises(EnvelopeError, match=f"entry {garbage}: undecodable envelope"):
            await aware.fetch()
    assert len(await knowing.dead_letters(RESULTS_DEAD_LETTERS)) == 1
    await plain.close()
    await knowing.close()


async def test_redis_down_at_start_is_named_at_once_or_within_the_timeouts() -> None:
    """Nothing listening: the worker, the caller, the admin calls and the command fail at
    once. A server that accepts and never answers: within the socket timeout."""
    flow = create(Node(_identity, name="n", policy=NodePolicy(validate="none")).to())
    where = f"127.0.0.1:{free_port()}"
    backend = RedisBackend(f"redis://alice:{WRONG}@{where}/0")
    failures: list[BaseException] = []
    for start in (lambda: serve(flow, backend), lambda: RemoteFlow(flow, backend).start()):
        with pytest.raises(BackendUnavailable) as caught:
            await start()
        failures.append(caught.value)
    with pytest.raises(BackendUnavailable) as caught:
        await backend.redrive("n")
    failures.append(caught.value)
    status, out = await _run(*worker_command(FLOWS + ":chain", f"redis://alice:{WRONG}@{where}/0"))
    assert status == 2 and f"cannot reach Redis at {backend.url}" in out and not _leaks([out])
    for failure in failures:
        assert where in str(failure) and "Connect call failed" in str(failure)
    assert not _leaks([text for failure in failures for text in _texts_of(failure)])

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    where = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        quiet = RedisBackend(f"redis://{where}/0", block_ms=1000)
        # The bound the backend documents: connect timeout, then the socket timeout.
        async with asyncio.timeout(CONNECT_TIMEOUT_S + socket_timeout_s(1000) + 5):
            with pytest.raises(BackendUnavailable) as timed_out:
                await RemoteFlow(flow, quiet).start()
    finally:
        silent.close()
    assert where in str(timed_out.value) and "TimeoutError" in str(timed_out.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis//alice:{WRONG}@x:1/0", "redis//alice:***@x:1/0"),
        (f"http://alice:{WRONG}@host/0", "http://alice:***@host/0"),
        (f"redis:/alice:{WRONG}@host/0", "redis:/alice:***@host/0"),
        (f"redis://alice:{WRONG}@host:abc/0", "redis://alice:***@host:abc/0"),
        (f"redis://:{WRONG}@host:70000/0", "redis://:***@host:70000/0"),
        (f"redis://:{WRONG}@host:0/0", "redis://:***@host:0/0"),
        ("unix://", "unix://"),
    ],
)
def test_a_malformed_url_is_refused_at_construction(url: str, shown: str) -> None:
    with pytest.raises(ValueError, match="RedisBackend url is not a Redis URL") as caught:
        RedisBackend(url)
    assert shown in str(caught.value)
    assert not _leaks(_texts_of(caught.value))


@pytest.mark.parametrize(
    ("url", "named"),
    [
        (f"rediss://:{WRONG}@127.0.0.1:1/0?ssl_ca_cert=/ca.pem", "option(s) ssl_ca_cert for"),
        (f"redis://:{WRONG}@127.0.0.1:1/0?ssl_ca_certs=/ca.pem", "TLS options need rediss://"),
        (f"redis://127.0.0.1:1/0?password={WRONG}&bogus=1", "password=***&bogus=1"),
        (f"redis://:{WRONG}@127.0.0.1:1/0?socket_timeout=soon", "socket_timeout"),
    ],
)
def test_a_bad_url_option_is_refused_at_the_first_connection(url: str, named: str) -> None:
    backend = RedisBackend(url)
    with pytest.raises(ValueError, match="RedisBackend url") as caught:
        backend.open()
    assert named in str(caught.value)
    assert not _leaks([*_texts_of(caught.value), repr(backend), backend.describe()])


def test_a_connection_error_that_quotes_a_secret_is_masked() -> None:
    """redis-py's errors do not quote the password today; if one did, it would be masked."""
    url = f"redis://alice:{quote(WRONG + '@')}@127.0.0.1:1/0?ssl_password={PASSWORD}"
    cause = ConnectionError(f"AUTH alice {WRONG}@ refused; key password {PASSWORD}")
    masked = _redacted(cause, url)
    assert type(masked) is ConnectionError
    assert str(masked) == "AUTH alice *** refused; key password ***"
    assert redact(url) == "redis://alice:***@127.0.0.1:1/0?ssl_password=***"
    other = ConnectionError("Connection refused")
    assert _redacted(other, url) is other
