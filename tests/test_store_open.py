"""Opening a run store that does not exist yet, from several processes at once.

Users hit this the first time they start two runs side by side: the schema (and the upgrade of
a store from an older lamrunner) must be created once, whoever gets there first.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

OPEN = """
import sys, time
from lamrunner.store.sqlite import RunStore
start = float(sys.argv[2])
while time.time() < start:
    pass
RunStore(sys.argv[1]).close()
"""


def test_processes_opening_a_new_store_together_all_succeed(tmp_path: Path) -> None:
    import time

    for round_ in range(3):
        path = tmp_path / f"round{round_}" / "runs.sqlite3"
        start = str(time.time() + 1.0)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN, str(path), start], stderr=subprocess.PIPE, text=True
            )
            for _ in range(6)
        ]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, errors
        assert path.exists()
