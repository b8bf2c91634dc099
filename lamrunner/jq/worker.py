"""One JQ program call in a process of its own: `python -m lamrunner.jq.worker MEMORY`.

Why a process: the `jq` binding holds the GIL while a program runs, so a runaway program
(`last(range(1e12))`) run on a thread would freeze every poll of the process, and a thread
cannot be stopped. A process can be killed at handlerTimeout, and its address space is capped
at handlerMemory (on top of what Python and jq take to start). It reads one JSON request on
stdin, `{"program": ..., "data": <the GWO as JSON text>}`, and writes one JSON answer on stdout:
`{"result": <JSON text>}` or `{"error": ..., "kind": ..., "line": ..., "column": ...}`.
"""

from __future__ import annotations

import contextlib
import json
import sys

from lamrunner.jq.runtime import run_here


def _cap_memory(extra: int) -> None:
    try:
        import resource
    except ImportError:  # not on this platform: no memory limit (docs/handlers.md says so)
        return
    with open("/proc/self/statm") as statm:  # Linux: pages of the address space now
        pages = int(statm.read().split()[0])
    limit = pages * resource.getpagesize() + extra
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main() -> None:
    request = json.loads(sys.stdin.read())
    with contextlib.suppress(OSError, ValueError):  # no /proc: no memory limit
        _cap_memory(int(sys.argv[1]))
    answer = run_here(request["program"], request["data"])
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
