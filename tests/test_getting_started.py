"""What a newcomer meets first: packaging metadata, the LICENSE, and the samples' job API
when it is started with the wrong Python."""

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
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--disable-pip-version-check",
         "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=120, env=_pip_env(tmp_path),
    )  # fmt: skip
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
