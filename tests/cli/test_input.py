"""Input lines read from a pipe by a thread, while the flow runs."""

from __future__ import annotations

import asyncio
import contextlib
import os

from penguiflow.cli._input import read_lines


async def test_a_pipe_is_read_by_a_thread_a_few_lines_ahead() -> None:
    """The writer sends two lines and waits: both arrive before the pipe is closed (the
    reader does not wait for the end), then the rest after it; blank lines are counted."""
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, encoding="utf-8") as stream, os.fdopen(write_end, "w") as writer:
        lines = read_lines(stream, buffer=1)
        async with contextlib.aclosing(lines):
            writer.write('1\n\n"two"\n')
            writer.flush()
            assert await asyncio.wait_for(anext(lines), 10) == (1, "1\n")
            assert await asyncio.wait_for(anext(lines), 10) == (3, '"two"\n')
            writer.write("4\n")
            writer.close()
            assert [item async for item in lines] == [(4, "4\n")]
