"""CPU instructions per request of the throughput contenders, counted under callgrind:

    python -m bench.instructions [CONTENDER ...]     # default: bare api
    python -m bench.instructions --canned            # lamrunner's poll loop alone

Wall-clock throughput on a shared VM moves by ±30 % between runs; instruction counts do not.
Each contender (`bench.scenarios.clients`) runs twice under `valgrind --tool=callgrind`, with
50 loops of 20 and of 60 attempts against the bench server, and the figure is the difference
divided by the 2,000 requests between them: start-up, imports and the workflow's loading cancel
out. `--canned` counts the same way with the network taken out (`bench.scenarios.canned`):
lamrunner's poll loop against a loop of the same canned send. Needs valgrind on PATH
(`apt-get install valgrind`); about a minute per contender.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.scenarios.throughput import HANDLER, WORKFLOW
from bench.server import ServerPool

LOOPS, FEW, MANY = 50, 20, 60
_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(contender: str, url: str, workflow: Path, attempts: int) -> int:
    """Instructions the contender's process ran for `LOOPS * attempts` requests."""
    if contender.startswith("canned-"):
        child = ["bench.scenarios.canned", contender[7:], str(workflow), str(attempts)]
    else:
        extra = [str(workflow)] if contender in ("api", "run") else []
        child = ["bench.scenarios.clients", contender, url + "/poll", str(LOOPS), str(attempts)]
        child += extra
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}/callgrind.out",
            sys.executable,
            "-m",
            *child,
        ]
        env = dict(os.environ, PYTHONHASHSEED="0")
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no count for {contender}")
    return int(found.group(1))


def per_request(contender: str, url: str, workflow: Path) -> float:
    few = instructions(contender, url, workflow, FEW)
    many = instructions(contender, url, workflow, MANY)
    return (many - few) / (LOOPS * (MANY - FEW))


def main() -> None:
    contenders = sys.argv[1:] or ["bare", "api"]
    if contenders == ["--canned"]:
        contenders = ["canned-bare", "canned-lam"]
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not on PATH (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp, ServerPool(2) as server:
        folder = Path(tmp)
        (folder / "poll.js").write_text(HANDLER)
        workflow = folder / "workflow.yaml"
        workflow.write_text(WORKFLOW.format(url=server.url, loops=LOOPS))
        figures = {name: per_request(name, server.url, workflow) for name in contenders}
    base = figures.get("bare", figures.get("canned-bare"))
    for name, value in figures.items():
        ratio = f"  bare/this {base / value:.3f}" if base else ""
        print(f"{name:12s} {value:10.0f} instructions per request{ratio}")


if __name__ == "__main__":
    main()
