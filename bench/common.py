"""What every scenario uses: the run's context, timing children, a few statistics."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .server import ServerPool

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def log(message: str) -> None:
    """Progress goes to stderr; stdout is the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def child_env() -> dict[str, str]:
    """The bench's environment, with `bench` importable and no run store of the user's."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("LAMRUNNER_STORE", None)
    return env


@dataclass
class Child:
    stdout: str
    returncode: int
    wall: float  # seconds, the whole process
    rss_mb: float  # peak resident set (ru_maxrss of the child)
    cpu: float  # user + system seconds of the child
    stderr: Path | None = None

    def result(self) -> Any:
        """The child's last stdout line, as JSON; a failed child is an error quoting its log."""
        if self.returncode != 0:
            log_tail = self.stderr.read_text(errors="replace")[-1500:] if self.stderr else ""
            raise RuntimeError(f"child exited with {self.returncode}: {log_tail or self.stdout}")
        return json.loads(self.stdout.strip().splitlines()[-1])


def run_child(cmd: list[str], *, timeout: float, stderr: Path | None = None) -> Child:
    """Run a command to its end (killed after `timeout`), with its own peak RSS and CPU time."""
    with ExitStack() as stack:
        err = stack.enter_context(open(stderr, "wb")) if stderr else subprocess.DEVNULL
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=child_env()
        )
        reaped = threading.Event()
        timer = threading.Timer(timeout, lambda: reaped.is_set() or proc.kill())
        timer.start()
        try:
            assert proc.stdout is not None
            out = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            reaped.set()
            timer.cancel()
            if proc.stdout is not None:
                proc.stdout.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return Child(
        out.decode(errors="replace"),
        proc.returncode,
        time.perf_counter() - started,
        usage.ru_maxrss / 1024,
        usage.ru_utime + usage.ru_stime,
        stderr,
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..1)."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


@dataclass
class Bench:
    """One invocation: sizes (`smoke`), a temp dir, the target server (started on first use)."""

    smoke: bool
    tmp: Path
    stack: ExitStack
    server_workers: int = 2
    raw: dict[str, Any] = field(default_factory=dict)
    _server: ServerPool | None = None

    @property
    def server(self) -> ServerPool:
        if self._server is None:
            self._server = self.stack.enter_context(ServerPool(self.server_workers))
            log(
                f"server: {self.server_workers} workers ({self._server.loop}) at {self._server.url}"
            )
        return self._server

    @property
    def server_loop(self) -> str:
        return self._server.loop if self._server is not None else "-"

    @property
    def node(self) -> str | None:
        return shutil.which("node")
