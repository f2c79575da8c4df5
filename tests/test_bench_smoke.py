"""The benchmark suite runs end to end and prints every row of its table.

Timings are never asserted here: ``--quick`` numbers mean nothing. Peers that
are not installed (CI installs only the test extra) show "not installed".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: One row per measurement of issue 6: overhead (sync, async), herds (three
#: moments x two modes), renewal latency (two modes), minting (two kinds x three
#: algorithms), import time, memory (RSS, tracemalloc); and of issue 13: fleet
#: token requests (three moments x two modes), herd latency (two modes), Redis
#: down and hung (two modes each), the hot path with a store (sync, async), the
#: per-credential cost (sync, async); and DPoP (issue 15: request
#: overhead for ES256 and EdDSA, proof cost for both).
ROW_KEYS = (
    *("1a", "1b"),
    *(f"2{c}" for c in "abcdef"),
    *("3a", "3b"),
    *(f"4{c}" for c in "abcdef"),
    "5",
    *("6a", "6b"),
    *(f"7{c}" for c in "abcdef"),
    *("8a", "8b"),
    *(f"9{c}" for c in "abcd"),
    *("10a", "10b"),
    *("11a", "11b"),
    *(f"12{c}" for c in "abcd"),
)


def test_quick_bench_prints_every_row() -> None:
    """`bench/run.py --quick` exits 0 and its table has a row for every measurement."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard; the run takes under a minute (the fleets spawn processes)
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    missing = [key for key in ROW_KEYS if not any(ln.startswith(f"| {key} | ") for ln in lines)]
    assert not missing, f"rows missing from the table: {missing}\n{result.stdout}"
    assert "## Environment" in result.stdout
