"""Run every benchmark line on each event loop and print one markdown table.

Lines: chain (with the no-op middleware side), fanout, concurrency, memory, soak, stores, each
with its default sizes. Loops: asyncio, and uvloop when it is installed. The machine and the
penguiflow revision measured are printed above the table; progress goes to stderr, so stdout is the
report alone.

Run: ``python benchmarks/run_all.py [--rounds 5] [--loops asyncio uvloop]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as common
import chain
import concurrency
import fanout
import memory
import soak
import stores

LINES = {
    "chain": (chain, {"middleware": True}),
    "fanout": (fanout, {}),
    "concurrency": (concurrency, {}),
    "memory": (memory, {}),
    "soak": (soak, {}),
    "stores": (stores, {}),
}
REPO = Path(__file__).resolve().parent.parent


def command_output(*command: str) -> str:
    if shutil.which(command[0]) is None:
        return ""
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    return done.stdout.strip() if done.returncode == 0 else ""


def machine() -> list[str]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in command_output("lscpu").splitlines()
            if line.startswith("Model name:")
        ),
        "unknown (no lscpu)",
    )
    revision = command_output("git", "rev-parse", "--short", "HEAD") or "unknown"
    if command_output("git", "status", "--porcelain", "--", "penguiflow"):
        revision += " + uncommitted changes under penguiflow/"
    return [
        f"- platform: {platform.platform()}",
        f"- python: {platform.python_implementation()} {sys.version.split()[0]}",
        f"- cpus: {os.cpu_count()}, model: {model}",
        f"- penguiflow revision: {revision}",
    ]


def run_loop(loop: str, rounds: int) -> tuple[list[common.Row], dict[str, float]]:
    """Run every line on one loop; return the rows and each line's wall time in seconds."""
    rows: list[common.Row] = []
    seconds: dict[str, float] = {}
    for name, (module, options) in LINES.items():
        print(f"[{loop}] {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        results = common.run(functools.partial(module.main, rounds=rounds, **options), loop)
        seconds[name] = time.perf_counter() - started
        rows.extend(module.rows(results))
    return rows, seconds


def table(loops: list[str], measured: dict[str, list[common.Row]]) -> list[str]:
    header = ["line", "target", *loops]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    first = measured[loops[0]]
    for index, (line, target, _) in enumerate(first):
        cells = [measured[loop][index][2] for loop in loops]
        lines.append("| " + " | ".join([line, target, *cells]) + " |")
    return lines


def main(rounds: int = 5, loops: list[str] | None = None) -> dict[str, Any]:
    wanted = list(loops or common.LOOPS)
    if "uvloop" in wanted and not common.uvloop_available():
        print(common.UVLOOP_MISSING + " Skipping the uvloop column.", file=sys.stderr)
        wanted.remove("uvloop")
    if not wanted:
        raise SystemExit("No event loop left to measure.")
    started = time.perf_counter()
    measured: dict[str, list[common.Row]] = {}
    timings: dict[str, dict[str, float]] = {}
    for loop in wanted:
        measured[loop], timings[loop] = run_loop(loop, rounds)
    return {
        "loops": wanted,
        "rows": measured,
        "seconds": timings,
        "total_seconds": time.perf_counter() - started,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side (default 5)")
    parser.add_argument("--loops", nargs="+", choices=common.LOOPS, default=list(common.LOOPS))
    args = parser.parse_args()
    outcome = main(args.rounds, args.loops)
    print("\n".join(machine()))
    loops = ", ".join(outcome["loops"])
    print(f"- rounds: {args.rounds} per side; rates are medians, ratios paired per round")
    print(f"- loops: {loops}")
    print()
    print("\n".join(table(outcome["loops"], outcome["rows"])))
    print()
    for loop, seconds in outcome["seconds"].items():
        spent = ", ".join(f"{name} {value:.1f}s" for name, value in seconds.items())
        print(f"{loop}: {spent}")
    print(f"total: {outcome['total_seconds']:.1f}s")


if __name__ == "__main__":
    cli()
