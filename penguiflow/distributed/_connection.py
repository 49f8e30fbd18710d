"""Opening Redis: the URL checked, the optional import, timeouts for blocking reads, hidden secrets.

Design note (secrets): a URL's password (``redis://user:password@host``) and any query value
named like a password (``?password=``, ``?ssl_password=``, which redis-py also takes) are
replaced by ``***`` wherever a URL or a connection error's text is shown. The masking reads
the URL as text rather than parsing it, so that a malformed URL is masked too.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any, Final, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import BackendUnavailable

__all__ = [
    "CONNECT_TIMEOUT_S",
    "check_reachable",
    "check_url",
    "open_client",
    "redact",
    "require_redis",
    "scrub",
    "socket_timeout_s",
]

MISSING_REDIS = (
    "penguiflow.distributed needs redis-py; install the extra: "
    "pip install 'penguiflow-runtime[redis]'"
)
CONNECT_TIMEOUT_S: Final = 5.0
"""How long opening a connection (TCP, TLS handshake) may take."""
_SCHEMES: Final = ("redis", "rediss", "unix")
_SECRET_QUERY: Final = re.compile(r"((?:^|[?&])(?:ssl_)?password=)([^&#]*)")


def require_redis() -> Any:
    """Import ``redis.asyncio`` (an optional dependency).

    Returns ``Any``: the module is typed by redis-py, which this package does not require.

    Raises:
        ImportError: redis-py is not installed; the message says how to install it.
    """
    try:
        return importlib.import_module("redis.asyncio")
    except ImportError as exc:
        raise ImportError(MISSING_REDIS) from exc


def redact(url: str) -> str:
    """``url`` with its password and password-like query values replaced by ``***``."""
    base, question, query = url.partition("?")
    head, at, host = base.rpartition("@")
    if at:
        # The user info runs from the scheme's "//" (or a lone "/", or the start) to the
        # last "@"; everything after its first ":" is the password, whatever it holds.
        start = head.find("//") + 2 if "//" in head else head.find("/") + 1
        user, colon, _password = head[start:].partition(":")
        if colon:
            base = f"{head[:start]}{user}:***@{host}"
    return base + question + _SECRET_QUERY.sub(r"\1***", query)


def check_url(url: str) -> None:
    """Check that ``url`` names a Redis server (no I/O, no import of redis-py).

    Raises:
        ValueError: not ``redis://``, ``rediss://`` or ``unix://``, a port that is not a
            number in 1-65535, or a ``unix://`` URL without a path; the message names the
            URL with its password hidden.
    """
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not url.startswith(f"{parts.scheme}://"):
        _refuse(url, "expected redis://[user:password@]host:port/db, rediss://... or unix://path")
    if parts.scheme == "unix":
        if not parts.path:
            _refuse(url, "a unix:// URL needs the socket's path")
        return
    try:
        port = parts.port
    except ValueError as exc:
        _refuse(url, f"bad port: {exc}")
    if port == 0:
        _refuse(url, "bad port: 0")


def _refuse(url: str, problem: str) -> NoReturn:
    raise ValueError(f"RedisBackend url is not a Redis URL: {redact(url)} ({problem})")


def socket_timeout_s(block_ms: int) -> float:
    """The socket timeout for a client whose blocking reads wait at most ``block_ms``."""
    return max(3 * block_ms / 1000.0, 5.0)


def scrub(text: str, url: str) -> str:
    """``text`` with the password of ``url`` (as written, and percent-decoded) replaced by ``***``.

    For error texts a health report or a log shows: a server's or a library's message may
    quote the URL or the credentials it was given.
    """
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    if not password:
        return text
    for secret in {password, unquote(password)}:
        text = text.replace(secret, "***")
    return text


def open_client(url: str, *, block_ms: int) -> Any:
    """A client for ``url`` (``redis://``, ``rediss://``, ``unix://``) with explicit timeouts.

    The URL's query carries redis-py's connection options, TLS ones included
    (``rediss://host:6380/0?ssl_ca_certs=/path/ca.pem``).

    Design note: redis-py's default socket timeout (5 s) would cut a longer blocking read and
    silently re-send it; reads here block at most ``block_ms``, and the socket timeout is at
    least three times that.

    Raises:
        ValueError: the URL is not a Redis URL, or its query has an option redis-py does not
            take for its scheme or a value it cannot read (named without the password).
    """
    check_url(url)
    redis = require_redis()
    try:
        client = redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout_s(block_ms),
            socket_connect_timeout=CONNECT_TIMEOUT_S,
        )
    except ValueError as exc:
        raise ValueError(f"RedisBackend url is not a Redis URL: {redact(url)} ({exc})") from None
    unknown = _unknown_options(url, client.connection_pool.connection_class)
    if unknown:
        tls = " (TLS options need rediss://)" if any(n.startswith("ssl") for n in unknown) else ""
        raise ValueError(
            f"RedisBackend url {redact(url)}: unknown connection option(s) "
            f"{', '.join(unknown)} for {urlsplit(url).scheme}://{tls}"
        )
    return client


def _unknown_options(url: str, connection_class: type) -> list[str]:
    """The query options of ``url`` that no ``__init__`` of ``connection_class`` takes.

    redis-py passes unknown query options on to the connection, which fails with a
    ``TypeError`` only at the first command; this names them at once.
    """
    accepted = {"max_connections", "connection_class"}  # the pool's own
    for cls in connection_class.__mro__:
        init = cls.__dict__.get("__init__")
        if init is not None:
            accepted.update(inspect.signature(init).parameters)
    return sorted(set(parse_qs(urlsplit(url).query)) - accepted)


async def check_reachable(client: Any, url: str) -> None:
    """Ping the server once.

    Fails at once if the connection is refused, else within ``CONNECT_TIMEOUT_S`` (no
    connection, no TLS handshake) or the socket timeout (no answer): redis-py does not retry
    a first connection.

    Raises:
        BackendUnavailable: it did not answer, or refused the TLS handshake or the credentials.
    """
    redis = require_redis()
    try:
        await client.ping()
    except (redis.RedisError, OSError) as exc:
        raise BackendUnavailable(redact(url), _redacted(exc, url)) from None


def _redacted(exc: BaseException, url: str) -> BaseException:
    """``exc`` or, when its text holds one of the URL's secrets, a copy that does not."""
    text = str(exc)
    found = [secret for secret in _secrets(url) if secret in text]
    if not found:
        return exc
    for secret in sorted(found, key=len, reverse=True):
        text = text.replace(secret, "***")
    return type(exc)(text)


def _secrets(url: str) -> set[str]:
    parts = urlsplit(url)
    found = {value for values in _query_secrets(parts.query) for value in values}
    if parts.password:
        found |= {parts.password, unquote(parts.password)}
    return {secret for secret in found if secret}


def _query_secrets(query: str) -> list[list[str]]:
    return [values for name, values in parse_qs(query).items() if name.endswith("password")]
