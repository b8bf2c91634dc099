"""The `package` sub-command's command line, apart from the builder: every `lamrunner` command
builds the whole parser, and `cli.package` (zipfile, importlib.metadata, pip plumbing) costs
30-50 ms to import, which only `lamrunner package` should pay."""

from __future__ import annotations

from typing import Any

TARGETS = ("aws", "gcp")
ARCHES = ("x86_64", "arm64")
PYTHONS = ("3.11", "3.12", "3.13")
DEFAULT_PYTHON = "3.12"


def add_parser(commands: Any) -> None:
    """The `package` sub-command's options (main.py adds the log options)."""
    package = commands.add_parser("package", help="build a cloud-function bundle of a workflow")
    package.add_argument("workflow", help="the workflow YAML file")
    package.add_argument(
        "--target", choices=TARGETS, help="aws (Lambda) or gcp (Cloud Run functions)"
    )
    package.add_argument(
        "--arch", choices=ARCHES, default="x86_64", help="the function's CPU (default x86_64)"
    )
    package.add_argument(
        "--python",
        choices=PYTHONS,
        default=DEFAULT_PYTHON,
        help=f"the function's Python runtime (default {DEFAULT_PYTHON})",
    )
    package.add_argument(
        "--output",
        dest="output_dir",  # not `output`: the CLI writes a refusal's record to args.output
        metavar="DIR",
        help="where the bundle goes (aws: the zip and template.yaml; gcp: the source folder)",
    )
    package.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="a config layer to ship with the workflow (repeatable, later wins)",
    )
    package.add_argument(
        "--requirement",
        "-r",
        action="append",
        default=[],
        metavar="FILE",
        help="a pip requirements file of what the Python handlers import (repeatable)",
    )
