#!/usr/bin/env python3
"""Run a sample workflow against a throwaway job API, in one command.

    python samples/demo.py                                         # process-dataset
    python samples/demo.py samples/batch.yaml samples/inputs/batch.json
    python samples/demo.py samples/job-lifecycle.yaml samples/inputs/job-fails.json

It starts `samples/jobapi.py --port 0`, reads the URL from the line the server prints, runs
`python -m lamrunner run WORKFLOW --input @INPUT` with JOBAPI_URL set to that URL, stops the
server and exits with lamrunner's exit status (0 SUCCESS, 1 FAILED, 2 invalid). lamrunner's logs
(the polling progress) appear on stderr and its run record (JSON) on stdout, as usual.
Works from any directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ("samples/process-dataset.yaml", "samples/inputs/process-dataset.json")
STARTUP_TIMEOUT = 15.0


def resolve(arg: str) -> str:
    """A path given on the command line, as lamrunner (running in the repo root) should see it."""
    path = Path(arg)
    if not path.is_absolute() and not path.exists():
        path = ROOT / path  # not found from here: take it as relative to the repo root
    path = path.resolve()
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def read_url(server: subprocess.Popen[str]) -> str:
    """Wait for `jobapi listening on URL` and return URL (or raise if the server never says it)."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(server.stdout.readline()), daemon=True)
    reader.start()
    reader.join(STARTUP_TIMEOUT)
    line = lines[0].strip() if lines else ""
    if not line.startswith("jobapi listening on "):
        raise RuntimeError(f"the job API did not start (it said {line!r})")
    return line.rsplit(" ", 1)[1]


def main(argv: list[str]) -> int:
    if len(argv) not in (0, 2) or argv[:1] in (["-h"], ["--help"]):
        print("usage: python samples/demo.py [WORKFLOW.yaml INPUT.json]", file=sys.stderr)
        return 2
    workflow, input_file = (resolve(arg) for arg in (argv or DEFAULT))

    api_key = os.environ.get("PROCESSOR_API_KEY", "dev-key")  # what the workflows will send
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "samples" / "jobapi.py"), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "JOBAPI_API_KEY": api_key},
    )
    try:
        try:
            url = read_url(server)
        except RuntimeError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        print(f"demo: job API at {url}; running {workflow} with {input_file}", file=sys.stderr)
        run = subprocess.run(
            [sys.executable, "-m", "lamrunner", "run", workflow, "--input", f"@{input_file}"],
            cwd=ROOT,
            env={**os.environ, "JOBAPI_URL": url},
        )
        return run.returncode
    except KeyboardInterrupt:
        return 130
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
