"""Scenario 4, startup: wall time of `lamrunner --version` (the console script), of
`python -m lamrunner --version`, and of `lamrunner run` of a one-step Python-handler workflow
(--no-store) end to end, each the median of several runs after one warm-up, against
`python -c pass`. Also which modules `--version` loads (sys.modules, against bare Python's).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .. import Row
from ..common import PYTHON, Bench, log, median, run_child

NAME = "startup"
HANDLER = "def transform(data):\n    return {'hello': data['input']}\n"
WORKFLOW = "name: bench-startup\nsteps:\n  - name: hello\n    handler: hello.py\n"
COUNT = """import json, sys
before = set(sys.modules)
from lamrunner.cli.main import main
try:
    main(["--version"])
except SystemExit:
    pass
print(json.dumps({"total": len(sys.modules), "new": sorted(set(sys.modules) - before)}))
"""
HEAVY_STDLIB = {
    "asyncio",
    "ssl",
    "logging",
    "subprocess",
    "concurrent",
    "inspect",
    "pickle",
    "dataclasses",
    "typing",
    "uuid",
    "json",
    "socket",
    "argparse",
    "sqlite3",
    "email",
}
BASELINE = "import json, sys; print(json.dumps(len(sys.modules)))"


def _commands(bench: Bench) -> dict[str, list[str]]:
    folder = bench.tmp / "startup"
    folder.mkdir(exist_ok=True)
    (folder / "hello.py").write_text(HANDLER)
    (folder / "workflow.yaml").write_text(WORKFLOW)
    script = Path(PYTHON).parent / "lamrunner"
    lamrunner = [str(script)] if script.exists() else [PYTHON, "-m", "lamrunner"]
    return {
        "python -c pass": [PYTHON, "-c", "pass"],
        "lamrunner --version": [*lamrunner, "--version"],
        "python -m lamrunner --version": [PYTHON, "-m", "lamrunner", "--version"],
        "lamrunner run (1 Python step)": [
            *lamrunner,
            "run",
            str(folder / "workflow.yaml"),
            "--no-store",
            "--input",
            '{"n": 1}',
        ],
    }


def run(bench: Bench) -> list[Row]:
    reps = 3 if bench.smoke else 10
    commands = _commands(bench)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_number in range(reps + 1):  # round 0 warms the file cache and bytecode
        for name, cmd in commands.items():
            child = run_child(cmd, timeout=60, stderr=bench.tmp / "startup.stderr")
            if child.returncode != 0:
                raise RuntimeError(f"{name} exited with {child.returncode}")
            if round_number:
                times[name].append(child.wall * 1000)
    ms = {name: median(values) for name, values in times.items()}
    counted = run_child([PYTHON, "-c", COUNT], timeout=60).result()
    bare, loaded = run_child([PYTHON, "-c", BASELINE], timeout=60).result(), counted["new"]
    tops = {name.split(".")[0] for name in loaded}
    third_party = sorted(tops - sys.stdlib_module_names)
    heavy = sorted(tops & HEAVY_STDLIB)
    bench.raw[NAME] = {
        "reps": reps,
        "ms": times,
        "commands": commands,
        "version_imports": loaded,
        "bare_python_modules": bare,
    }
    log(f"{NAME}: " + ", ".join(f"{name} {value:.0f} ms" for name, value in ms.items()))
    base = ms["python -c pass"]
    return [
        Row(NAME, "python -c pass", "ms (median)", base),
        Row(NAME, "lamrunner --version", "ms (median)", ms["lamrunner --version"], base, "<= 250"),
        Row(
            NAME,
            "python -m lamrunner",
            "ms (median), --version",
            ms["python -m lamrunner --version"],
            base,
        ),
        Row(
            NAME,
            "lamrunner run",
            "ms (median), 1 Python step",
            ms["lamrunner run (1 Python step)"],
            base,
        ),
        Row(
            NAME,
            "lamrunner --version",
            "modules in sys.modules",
            counted["total"],
            bare,
            note=f"--version imports {len(loaded)} modules beyond bare Python's {bare}; "
            f"third-party: {', '.join(third_party)}; among them {', '.join(heavy)}",
        ),
    ]
