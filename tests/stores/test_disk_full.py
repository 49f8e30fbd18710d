"""A ``SQLiteStore`` on a disk that really fills up, under a running flow.

The test mounts an 8 MiB tmpfs (we run as root); where mounting is not permitted it falls
back to a file size limit (``RLIMIT_FSIZE``, ``SIGXFSZ`` ignored), which SQLite reports as an
I/O error rather than a full disk. Each scenario runs in a process of its own
(``disk_full_worker.py``), so that the test can also check the process exits once the store is
closed, with no thread left behind; what the worker measured comes back as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

WORKER = Path(__file__).with_name("disk_full_worker.py")
PROCESS_BOUND_S = 25.0  # the worker's whole run; the scenarios take 1 s (recover), 7 s (abandon)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Yield how the disk was made small (``tmpfs`` or ``fsize``) and the store's directory."""
    where = tmp_path / "disk"
    where.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)],
            capture_output=True,
            check=False,
            timeout=10,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        mounted = None
    if mounted is None or mounted.returncode != 0:
        yield "fsize", where
        return
    try:
        yield "tmpfs", where
    finally:
        subprocess.run(["umount", str(where)], check=True, timeout=10)


def run_worker(disk: str, where: Path, phase: str) -> tuple[dict[str, Any], float]:
    """Run the scenario in a process; return its report and how long the process lived."""
    start = time.monotonic()
    # run() kills the process if it outlives the bound: nothing is left running.
    done = subprocess.run(
        [sys.executable, str(WORKER), "--dir", str(where), "--disk", disk, "--phase", phase],
        capture_output=True,
        text=True,
        timeout=PROCESS_BOUND_S,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    lifetime = time.monotonic() - start
    assert done.returncode == 0, f"worker failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1]), lifetime


def full_disk_error(disk: str) -> str:
    # ENOSPC is SQLITE_FULL; a short write past RLIMIT_FSIZE (EFBIG) is SQLITE_IOERR_WRITE.
    return "database or disk is full" if disk == "tmpfs" else "disk I/O error"


def test_a_full_disk_degrades_then_fails_and_the_store_recovers_when_space_is_freed(
    small_disk: tuple[str, Path], record_property: Any
) -> None:
    disk, where = small_disk
    report, lifetime = run_worker(disk, where, "recover")
    for name, value in report.items():
        record_property(name, value)
    assert full_disk_error(disk) in report["error"]
    assert report["bytes_before_full"] > 0 and report["traces_before_full"] > 0
    # failing_after_s=0.5, counted from the failed commit, seen a poll (10 ms) or so later
    assert 0.4 <= report["seconds_degraded_to_failing"] < 1.5
    assert "is failing" in report["refused"] and full_disk_error(disk) in report["refused"]
    assert report["recovery_s"] < 2.0  # retries are at most 0.1 s apart
    assert report["traces_stored"] == report["traces_before_full"] + 2  # nothing was lost
    assert lifetime < 15.0


def test_on_a_full_disk_stop_and_close_are_bounded_and_the_process_exits(
    small_disk: tuple[str, Path], record_property: Any
) -> None:
    disk, where = small_disk
    report, lifetime = run_worker(disk, where, "abandon")
    for name, value in report.items():
        record_property(name, value)
    assert full_disk_error(disk) in report["error"]
    assert 5.0 <= report["stop_s"] < 5.5  # PenguiFlow.stop() gives the store 5 s to flush
    assert 1.0 <= report["close_s"] < 1.5  # close(timeout_s=1.0)
    assert report["abandoned"] == report["pending_writes"] > 0
    assert report["threads_left"] == []
    assert lifetime < 15.0  # and it exited: run() returned with its exit status
