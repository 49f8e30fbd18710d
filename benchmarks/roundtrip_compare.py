"""Two revisions of the runtime on the roundtrip line, in one process, paired round by round.

As ``compare.py`` does for the chain: both revisions are imported side by side (each exported
under a private package name) and their rounds alternate with the floor's of
``roundtrip.py``, so each round compares them under the same conditions. Prints each side's
ratio to the floor and the median over rounds of the second revision's speedup over the
first.

Run: ``python benchmarks/roundtrip_compare.py BASE [OTHER] [--rounds 15] [--callers 1000]
[--requests 20000] [--loop asyncio|uvloop]``. OTHER defaults to the working tree. Numbers,
not assertions.
"""

from __future__ import annotations

import functools
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import _common as common
import compare
import roundtrip

if TYPE_CHECKING:
    from types import ModuleType


async def main(
    runtimes: dict[str, ModuleType], *, callers: int, requests: int, rounds: int
) -> dict[str, Any]:
    """Measure the floor and each runtime in turn every round; return medians and ratios."""
    (base, base_pf), (other, other_pf) = runtimes.items()
    await roundtrip.floor(callers, callers)  # warm up every side
    for pf in runtimes.values():
        await roundtrip.runtime(callers, callers, pf)
    measured = await common.interleave(
        rounds,
        {
            "floor": lambda: roundtrip.floor(callers, requests),
            base: lambda: roundtrip.runtime(callers, requests, base_pf),
            other: lambda: roundtrip.runtime(callers, requests, other_pf),
        },
    )
    results: dict[str, Any] = dict(measured)
    results["ratios"] = {name: measured.ratio(name, "floor") for name in runtimes}
    results["speedup"] = measured.ratio(other, base)
    results.update(base=base, other=other, loop=common.loop_label())
    return results


def cli() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("base", help="git revision measured first")
    parser.add_argument("other", nargs="?", default=compare.WORKTREE, help="default: worktree")
    parser.add_argument("--callers", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.set_defaults(rounds=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        sys.path.insert(0, directory)
        runtimes = {
            label: compare.export(label, Path(directory), f"_pf_roundtrip_{index}")
            for index, label in enumerate((args.base, args.other))
        }
        coroutine = functools.partial(
            main, runtimes, callers=args.callers, requests=args.requests, rounds=args.rounds
        )
        r = common.run(coroutine, args.loop)
    print(f"roundtrip, {args.base} against {args.other} -- {r['loop']}, {args.rounds} rounds")
    for name, ratio in r["ratios"].items():
        print(f"  {name}: {ratio:.2f}x the floor ({r[name]:,.0f} vs {r['floor']:,.0f} requests/s)")
    print(f"  speedup of {args.other} over {args.base}: {r['speedup']:.2f}x (median of rounds)")


if __name__ == "__main__":
    cli()
