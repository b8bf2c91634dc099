"""What a newcomer meets first: packaging metadata, the LICENSE, the samples' job API when it
is started with the wrong Python, and a test suite that leaves their home alone."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pip_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_CACHE")}
    env["PIP_CACHE_DIR"] = str(tmp_path / "pip-cache")  # never the user's cache
    env["HOME"] = str(tmp_path / "home")
    return env


def test_the_wheel_says_mit_carries_the_license_and_builds_without_deprecations(
    tmp_path: Path,
) -> None:
    """`pip install .` builds this wheel: SPDX license metadata, LICENSE inside, and no
    setuptools deprecation banner (the old `license = {text = ...}` form printed them)."""
    out = tmp_path / "wheels"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--disable-pip-version-check",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=_pip_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = proc.stdout + proc.stderr
    assert "SetuptoolsDeprecationWarning" not in log, log
    assert "project.license" not in log, log
    (wheel,) = out.glob("lamrunner-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = zf.read(metadata).decode()
        licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert licenses, names
        assert "MIT License" in zf.read(licenses[0]).decode()
    assert "License-Expression: MIT" in text.splitlines(), text[:500]
    assert "License-File: LICENSE" in text.splitlines(), text[:500]


def test_license_file_is_mit_for_the_lamrunner_authors() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the lamrunner authors" in text


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_the_suite_writes_nothing_into_home(tmp_path: Path) -> None:
    """tests/test_cli.py's module-scoped fixtures start real runs before any function fixture;
    run them under a fresh, empty HOME (no XDG_STATE_HOME, no LAMRUNNER_STORE, as in a user's
    shell) and the folder must stay empty: no ~/.local/state/lamrunner/runs.sqlite3."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("XDG_STATE_HOME", "LAMRUNNER_STORE", "PYTEST_ADDOPTS")
    }
    env["HOME"] = str(home)
    env["PIP_CACHE_DIR"] = str(tmp_path / "pip-cache")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_cli.py",
            "-k",
            "run_time_mistake",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout, proc.stdout[-3000:]
    assert _files_under(home) == [], _files_under(home)


def test_jobapi_without_its_dependency_says_what_to_do_in_one_line() -> None:
    """`python samples/jobapi.py` outside the venv: a one-line hint and exit 2, no traceback.
    -S keeps site-packages (and so aiohttp) off sys.path, as a bare system Python would."""
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(ROOT / "samples" / "jobapi.py"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "aiohttp is not installed" in lines[0]
    assert "bash scripts/demo.sh" in lines[0] and ".venv/bin/python" in lines[0]


def test_samples_readme_starts_the_job_api_with_the_venv_python() -> None:
    text = (ROOT / "samples" / "README.md").read_text(encoding="utf-8")
    assert ".venv/bin/python samples/jobapi.py" in text
    for line in text.splitlines():
        stripped = line.strip()
        assert not stripped.startswith(("python samples/", "python3 samples/")), line
