"""`python -m bench [--smoke] [--only NAME]... [--json FILE]`: run the scenarios, print one table.

Exit status 0 when every scenario ran and reported (goals met or not: this measures, it does
not judge), 1 when one of them failed; its error is on stderr and its row says n/a.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from contextlib import ExitStack
from importlib import import_module
from pathlib import Path

from . import Row, format_table
from .common import Bench, log

SCENARIOS = (
    "throughput",
    "scale",
    "conditions",
    "startup",
    "handlers",
    "serve",
)  # modules of bench.scenarios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every scenario at tiny sizes (CI)")
    parser.add_argument(
        "--only",
        choices=list(SCENARIOS),
        action="append",
        help="run this scenario (repeat for several, run in the usual order)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures to FILE")
    parser.add_argument(
        "--server-workers",
        type=int,
        default=2,
        metavar="N",
        help="processes of the target server (default 2)",
    )
    args = parser.parse_args(argv)
    names = [n for n in SCENARIOS if n in args.only] if args.only else list(SCENARIOS)
    rows: list[Row] = []
    failed: list[str] = []
    started, load = time.perf_counter(), os.getloadavg()[0]
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="lamrunner-bench-") as tmp:
        bench = Bench(
            smoke=args.smoke, tmp=Path(tmp), stack=stack, server_workers=args.server_workers
        )
        for name in names:
            log(f"{name}: start")
            try:
                rows += import_module(f"bench.scenarios.{name}").run(bench)
            except Exception as exc:  # noqa: BLE001 - report it, go on with the others
                traceback.print_exc()
                failed.append(name)
                rows.append(Row(name, "-", "failed", None, note=f"{name}: {exc}"))
        header = (
            f"lamrunner bench{' --smoke' if args.smoke else ''}: Python "
            f"{platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
            f"load {load:.1f} at start; "
            f"server {args.server_workers} workers ({bench.server_loop}); "
            f"{time.perf_counter() - started:.0f} s"
        )
    print(header)
    print(format_table(rows))
    if args.json:
        document = {"header": header, "rows": [r.to_dict() for r in rows], "raw": bench.raw}
        Path(args.json).write_text(json.dumps(document, indent=2, default=str) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
