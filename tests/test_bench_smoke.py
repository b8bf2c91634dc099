"""`python -m bench --smoke` (bench/README.md): every scenario runs and reports a figure.

This checks only that the benchmark suite works, not what it measures: its goals are for
people to read in the table, not for CI to enforce on a shared machine.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("throughput", "scale", "conditions", "startup", "handlers", "serve")


def _number(cell: str) -> bool:
    return re.fullmatch(r"-?\d+(\.\d+)?", cell) is not None


def test_bench_smoke_runs_every_scenario_and_reports_numbers() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [re.split(r"\s{2,}", line) for line in done.stdout.splitlines()]
    for name in SCENARIOS:
        values = [cells[3] for cells in rows if cells[0] == name and len(cells) >= 4]
        assert any(_number(value) for value in values), f"no figure for {name}:\n{done.stdout}"
