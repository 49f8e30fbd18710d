"""The README's distributed example, run as a user would, and the ``penguiflow`` command."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING

import pytest

from penguiflow.cli import main
from penguiflow.cli._target import load_target
from penguiflow.distributed import RedisBackend

from .servers import REPO, child_env

if TYPE_CHECKING:
    from .servers import RedisServer

FLOWS = str(REPO / "tests" / "distributed" / "flows.py")


@pytest.mark.timeout(60)
async def test_the_example_runs_two_workers_and_a_caller(redis_server: RedisServer) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "examples" / "distributed.py"),
        "--redis",
        redis_server.url,
        "--spawn-workers",
        stdout=asyncio.subprocess.PIPE,
        env=child_env(),
    )
    try:
        async with asyncio.timeout(45):
            out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = out.decode()
    assert process.returncode == 0, text
    assert text.count("penguiflow worker ready") == 2
    assert "[what is a penguin] answer: About what is a penguin: penguins are birds." in text
    assert "[the meaning of life] too slow: cancelled" in text
    assert text.count("penguiflow worker stopped (exit 0)") == 2
    assert "['answered', 'answered', 'cancelled']" in text


def test_load_target_takes_a_module_a_path_and_refuses_the_rest() -> None:
    _flow, registry, types = load_target(FLOWS + ":chain")
    assert registry is not None and types == []
    _flow, _registry, types = load_target(str(REPO / "examples" / "distributed.py") + ":build")
    assert [model.__name__ for model in types] == ["Question", "Facts"]
    with pytest.raises(ValueError, match="expected MODULE:ATTR"):
        load_target("no_colon")
    with pytest.raises(ValueError, match="not a flow"):
        load_target(FLOWS + ":headers")


async def test_dlq_commands_show_and_redrive(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = RedisBackend(redis_server.url)
    client = await backend.connect()
    stream = backend.keys.edge(None, "first")
    await client.xadd(
        backend.keys.dead_letters("first"),
        {"stream": stream, "id": "1-1", "node": "first", "reason": "r", "deliveries": 4, "e": "{}"},
    )
    target = FLOWS + ":chain"
    [letter] = await backend.dead_letters("first")
    loop = asyncio.get_running_loop()
    status = await loop.run_in_executor(
        None, main, ["dlq", "show", target, "first", letter.id, "--redis", redis_server.url]
    )
    shown = json.loads(capsys.readouterr().out)
    assert status == 0 and shown["envelope"] == "{}" and shown["deliveries"] == 4
    status = await loop.run_in_executor(
        None, main, ["dlq", "redrive", target, "first", "--redis", redis_server.url]
    )
    assert status == 0 and "re-drove 1 dead letters of first" in capsys.readouterr().out
    assert await backend.dead_letters("first") == []
    assert [fields for _id, fields in await client.xrange(stream)] == [{"e": "{}"}]
    await backend.close()


async def test_the_core_imports_neither_the_backend_nor_redis() -> None:
    code = (
        "import sys, penguiflow, penguiflow.core\n"
        "loaded = [m for m in sys.modules if m.startswith(('redis', 'penguiflow.distributed'))]\n"
        "assert not loaded, loaded\n"
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", code, env=child_env())
    assert await process.wait() == 0
