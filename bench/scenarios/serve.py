"""Scenario 6, serve: async jobs through one `lamrunner serve` process, two shapes.

    polling   JOBS async jobs, submitted uniformly over STAGGER seconds, each polling the target
              server every INTERVAL seconds, ATTEMPTS times (10,000 × every 10 s × 7, as in the
              scale scenario: about 1,000 polls/s). Peak RSS of the server process, the lateness
              of its polls (p50/p99/max), failed jobs, CPU: next to the CLI's figures for the
              same load (the scale scenario's lamrunner Engine in one process, no store).
    waiting   WAITING async jobs whose next poll is an hour away, so each is a row in the store
              and nothing in memory, and among them DUE jobs whose next poll falls in one
              10-second window: the server's RSS once all of them wait (against an idle
              server's), and the cost of waking the due ones (server CPU per woken job, the
              lateness of their polls).

The server runs as `python -m lamrunner serve FOLDER --port 0 --store <tmp>` (its first stdout
line says where it listens); a submitting client runs in its own process, so its CPU is not the
server's. Lateness is read from the run store every job is a run in: an attempt's start (`at`)
minus the time the attempt before it said it was due (`next_due`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .. import Row
from ..common import PYTHON, ROOT, Bench, child_env, log, percentile
from . import scale

NAME = "serve"
WORKFLOW = "name: bench-serve\nsteps:\n  - name: poll\n    handler: poll.py\n"
TICK = os.sysconf("SC_CLK_TCK")


class Server:
    """`lamrunner serve` over a folder, as a child process: its URL, RSS and CPU."""

    def __init__(self, folder: Path, store: Path, log_file: Path, hold: float = 60) -> None:
        self.store = store
        self._stderr = log_file.open("wb")
        self.proc = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "lamrunner",
                "serve",
                str(folder),
                "--port",
                "0",
                "--store",
                str(store),
                "--hold",
                str(hold),
            ],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**child_env(), "LAMRUNNER_LOG_LEVEL": "warning"},
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"lamrunner serve did not start: see {log_file}")
        self.url = json.loads(line)["listening"]

    def status(self, field: str) -> float:
        """VmRSS / VmHWM of the server, in MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field} for the server")

    def cpu(self) -> float:
        """Seconds of CPU the server has used (user + system)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


def _folder(bench: Bench) -> Path:
    folder = bench.tmp / "serve-workflows"
    folder.mkdir(exist_ok=True)
    (folder / "poll.py").write_text(scale.HANDLER)
    (folder / "workflow.yaml").write_text(WORKFLOW)
    return folder


async def _submit(url: str, payloads: list[dict[str, Any]], stagger: float) -> float:
    """POST every payload as an async job, spread over `stagger` seconds; the seconds taken."""
    import aiohttp

    loop = asyncio.get_running_loop()
    started = loop.time()
    endpoint = f"{url}/workflow/execute/bench-serve/async"
    gate = asyncio.Semaphore(50)

    async def one(i: int, payload: dict[str, Any], session: aiohttp.ClientSession) -> None:
        delay = started + i * stagger / len(payloads) - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if isinstance(payload["interval"], str):  # "@EPOCH": due then, counted from now
            payload = {
                **payload,
                "interval": max(1.0, float(payload["interval"][1:]) - time.time()),
            }
        async with gate, session.post(endpoint, json=payload) as resp:
            if resp.status != 202:
                raise RuntimeError(f"submit: {resp.status} {await resp.text()}")
            await resp.read()

    connector = aiohttp.TCPConnector(limit=50)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(one(i, p, session) for i, p in enumerate(payloads)))
    return loop.time() - started


def submit_main() -> None:
    """The submitting client's process: `python -m bench.scenarios.serve URL STAGGER` with the
    payloads as JSON lines on stdin; prints the seconds it took."""
    url, stagger = sys.argv[1], float(sys.argv[2])
    payloads = [json.loads(line) for line in sys.stdin if line.strip()]
    print(json.dumps({"seconds": asyncio.run(_submit(url, payloads, stagger))}))


def _submit_child(
    url: str, payloads: list[dict[str, Any]], stagger: float, timeout: float
) -> float:
    cmd = [PYTHON, "-m", "bench.scenarios.serve", url, str(stagger)]
    lines = "".join(json.dumps(p) + "\n" for p in payloads)
    done = subprocess.run(
        cmd, input=lines, capture_output=True, text=True, timeout=timeout, env=child_env(), cwd=ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(f"the submitting client failed: {done.stderr[-2000:]}")
    return float(json.loads(done.stdout)["seconds"])


def _counts(store: Path) -> dict[str, int]:
    with sqlite3.connect(store, timeout=30) as db:
        return dict(db.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())


def _waiting(store: Path) -> int:
    with sqlite3.connect(store, timeout=30) as db:
        row = db.execute("SELECT count(*) FROM jobs WHERE due_at IS NOT NULL").fetchone()
    return int(row[0])


def _lateness(store: Path, since: float = 0.0) -> list[float]:
    """Every attempt's start minus its due time (the previous attempt's next_due), seconds."""
    with sqlite3.connect(store, timeout=30) as db:
        rows = db.execute(
            "SELECT a.at - b.next_due FROM attempts a JOIN attempts b ON a.run_id = b.run_id"
            " AND a.step = b.step AND a.idx = b.idx AND a.attempt = b.attempt + 1"
            " WHERE b.next_due IS NOT NULL AND a.at >= ?",
            (since,),
        ).fetchall()
    return sorted(r[0] for r in rows)


def _wait_for(what: str, check: Any, timeout: float, every: float = 0.5) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise RuntimeError(f"{NAME}: timed out waiting for {what}")
        time.sleep(every)


def _ms(values: list[float], q: float) -> float | None:
    return percentile(values, q) * 1000 if values else None


POLLING = (10_000, 10, 7, 10)  # jobs, seconds between polls, attempts, seconds to submit over
POLLING_SMOKE = (200, 1, 3, 1)


def _polling(bench: Bench, folder: Path) -> dict[str, Any]:
    jobs, interval, attempts, stagger = POLLING_SMOKE if bench.smoke else POLLING
    url = bench.server.url + "/poll"
    store = bench.tmp / "serve-polling.sqlite3"
    log(f"{NAME}: polling, {jobs} jobs × {attempts} attempts every {interval} s")
    server = Server(folder, store, bench.tmp / "serve-polling.stderr")
    try:
        idle_rss = server.status("VmRSS")
        cpu0, before = server.cpu(), bench.server.stats()[0]
        payload = {"url": url, "attempts": attempts, "interval": interval}
        started = time.monotonic()
        _submit_child(server.url, [payload] * jobs, stagger, stagger + 300)
        submitted = time.time()  # every job accepted: from here on, polling only
        total = stagger + interval * (attempts - 1) + 300

        def ended() -> bool:
            counts = _counts(store)
            return sum(counts.get(s, 0) for s in ("completed", "failed", "canceled")) >= jobs

        _wait_for("every job to end", ended, total)
        seconds = time.monotonic() - started
        counts, peak, cpu = _counts(store), server.status("VmHWM"), server.cpu() - cpu0
        served = bench.server.stats()[0] - before
    finally:
        server.stop()
    late, steady = _lateness(store), _lateness(store, since=submitted)
    return {
        "jobs": jobs,
        "stagger": stagger,
        "interval": interval,
        "attempts": attempts,
        "idle_rss_mb": idle_rss,
        "rss_mb": peak,
        "failed": jobs - counts.get("completed", 0),
        "counts": counts,
        "served": served,
        "expected": jobs * attempts,
        "seconds": seconds,
        "cpu": cpu,
        "lateness_ms": {"p50": _ms(late, 0.5), "p99": _ms(late, 0.99), "n": len(late)},
        "steady_lateness_ms": {
            "p50": _ms(steady, 0.5),
            "p99": _ms(steady, 0.99),
            "n": len(steady),
        },
    }


def _waiting_jobs(bench: Bench, folder: Path) -> dict[str, Any]:
    waiting, due, window = (500, 50, 2.0) if bench.smoke else (100_000, 10_000, 10.0)
    url = bench.server.url + "/poll"
    store = bench.tmp / "serve-waiting.sqlite3"
    log(f"{NAME}: waiting, {waiting} jobs an hour away, {due} of them due in one window")
    # Smoke: waits of seconds, so a 1-second hold makes them rows, as an hour's are.
    hold = 1 if bench.smoke else 60
    server = Server(folder, store, bench.tmp / "serve-waiting.stderr", hold)
    try:
        idle_rss = server.status("VmRSS")
        # First the jobs an hour away, as fast as the server takes them; then the due ones,
        # due `lead` seconds after they are expected to be rows (at twice the first batch's
        # pace per job), their polls spread over [wake, wake + window].
        far = [{"url": url, "attempts": 2, "interval": 3600}] * (waiting - due)
        started = time.monotonic()
        seconds = _submit_child(server.url, far, 0.0, 1800)
        _wait_for("the far jobs to wait as rows", lambda: _waiting(store) >= len(far), 600)
        per_job = (time.monotonic() - started) / len(far)
        lead = hold + (3 if bench.smoke else 30)  # beyond the hold: rows, not coroutines
        wake = time.time() + 2 * per_job * due + lead
        near = [
            {"url": url, "attempts": 2, "interval": f"@{wake + window * k / due}"}
            for k in range(due)
        ]
        seconds += _submit_child(server.url, near, 0.0, 600)
        _wait_for("every job to wait as a row", lambda: _waiting(store) >= waiting, 600)
        rows_after = time.monotonic() - started
        rss_waiting, peak_before = server.status("VmRSS"), server.status("VmHWM")
        if time.time() > wake:
            log(f"{NAME}: warning: the jobs took until after the wake window to wait")
        time.sleep(max(0.0, wake - time.time() - 1.0))
        cpu0 = server.cpu()
        woken_at = time.time() - 1.0
        _wait_for(
            "the due jobs to complete",
            lambda: _counts(store).get("completed", 0) >= due,
            window + 300,
            every=0.2,
        )
        cpu = server.cpu() - cpu0
        woke_seconds = time.time() - woken_at
        rss_end = server.status("VmRSS")
    finally:
        server.stop()
    late = _lateness(store, since=woken_at)
    return {
        "waiting": waiting,
        "due": due,
        "idle_rss_mb": idle_rss,
        "rss_waiting_mb": rss_waiting,
        "peak_rss_mb": peak_before,
        "rss_after_wake_mb": rss_end,
        "submit_seconds": seconds,
        "until_all_rows_seconds": rows_after,
        "wake_cpu_seconds": cpu,
        "wake_seconds": woke_seconds,
        "lateness_ms": {"p50": _ms(late, 0.5), "p99": _ms(late, 0.99), "n": len(late)},
        "store_mb": store.stat().st_size / 1e6,
    }


def _cli_figures(bench: Bench, polling: dict[str, Any]) -> dict[str, Any] | None:
    """The CLI's figures for the same load: the scale scenario's, when it ran in this bench."""
    raw = bench.raw.get("scale")
    if not raw or raw.get("loops") != polling["jobs"]:
        return None
    result: dict[str, Any] = raw["results"]["lamrunner"]
    return result


def run(bench: Bench) -> list[Row]:
    folder = _folder(bench)
    polling = _polling(bench, folder)
    if polling["served"] < polling["expected"]:
        raise RuntimeError(
            f"{NAME}: the target server saw {polling['served']} polls, "
            f"expected {polling['expected']}"
        )
    waiting = _waiting_jobs(bench, folder)
    bench.raw[NAME] = {"polling": polling, "waiting": waiting}
    cli = _cli_figures(bench, polling)
    note = "" if cli else "baseline: run with the scale scenario (the CLI's figures)"
    jobs = f"serve ({polling['jobs']} polling)"
    rows = [
        Row(NAME, jobs, "peak RSS (MB)", polling["rss_mb"], cli and cli["rss_mb"], "<= 300", note),
        Row(
            NAME,
            jobs,
            "poll lateness p99 (ms), all submitted",
            polling["steady_lateness_ms"]["p99"],
            cli and cli["lateness_ms"]["p99"],
            "<= 50",
        ),
        Row(
            NAME,
            jobs,
            "poll lateness p50 (ms), all submitted",
            polling["steady_lateness_ms"]["p50"],
        ),
        Row(
            NAME,
            jobs,
            "poll lateness p99 (ms), every poll",
            polling["lateness_ms"]["p99"],
            None,
            "",
            "every poll: the first ones too, made while the server was still taking the jobs' "
            f"submissions ({polling['jobs']:,} over {polling['stagger']} s)",
        ),
        Row(NAME, jobs, "failed jobs", polling["failed"], None, "<= 0"),
        Row(
            NAME,
            jobs,
            "CPU (% of one core)",
            100 * polling["cpu"] / polling["seconds"],
            cli and 100 * cli["cpu"] / cli["seconds"],
        ),
    ]
    who = f"serve ({waiting['waiting']} waiting)"
    per_wake = 1000 * waiting["wake_cpu_seconds"] / waiting["due"]
    rows += [
        Row(NAME, who, "RSS, all waiting (MB)", waiting["rss_waiting_mb"], waiting["idle_rss_mb"]),
        Row(NAME, who, "server CPU per woken job (ms)", per_wake),
        Row(
            NAME,
            who,
            f"lateness of {waiting['due']} woken polls p99 (ms)",
            waiting["lateness_ms"]["p99"],
            None,
            "<= 1000",
        ),
        Row(
            NAME,
            who,
            "submit + first poll, per job (ms)",
            1000 * waiting["until_all_rows_seconds"] / waiting["waiting"],
        ),
    ]
    return rows


if __name__ == "__main__":
    submit_main()
