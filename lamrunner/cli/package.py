"""`lamrunner package`: build what a user deploys as a cloud function.

The workflow is validated first, as `lamrunner validate` does it (a bad one is refused, exit 2).
Then its files — the workflow, every handler file, what Python handlers import from beside
them, and the `--config` files — are gathered with their relative layout kept, so
`handler: ../handlers/x.py` still resolves from the workflow's folder inside the bundle.

- **aws**: `<name>-aws-<arch>-py<ver>.zip` — those files, lamrunner (a wheel built from this
  installation) and its dependencies with the `[aws]` extra, installed by pip for the Lambda
  platform (`manylinux2014_<arch>`, CPython <ver>, binary wheels only) at the zip's root — and a
  SAM `template.yaml` beside it: a durable function whose handler is
  `lamrunner.aws.durable_handler`.
- **gcp**: a source folder for `gcloud functions deploy --gen2`: `main.py` (imports
  `lamrunner.gcp.http_function`), `requirements.txt` (the lamrunner wheel shipped in the folder,
  the `[gcp]` extra), the workflow's files and a README.txt with the deploy command. Its
  requirements are installed once into a scratch folder for the function's platform, so what
  cannot install, or what a handler imports that nothing provides, is found here, not in the
  cloud build.

Before anything is written, every Python handler's imports are checked (`ast`) against the
standard library of the target Python, the installed bundle and the handler's own folder: a
module none of them has is an error naming the handler file and the module.

Both bundles carry `lamrunner-package.json` at their root, the bundle's manifest: the workflow's
path inside the bundle and the config files', for the cloud entry points (which also read
$LAMRUNNER_WORKFLOW and $LAMRUNNER_CONFIG, set by the template or the deploy command).
"""

from __future__ import annotations

import argparse
import ast
import base64
import compileall
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lamrunner
from lamrunner.errors import DefinitionError

if TYPE_CHECKING:  # the loader (yaml, QuickJS) is imported when a bundle is built, not for --help
    from lamrunner.definition.workflow import Workflow

MANIFEST = "lamrunner-package.json"
CONFIG_DIR = "config"  # where --config files go inside a bundle
AWS_HANDLER = "lamrunner.aws.durable_handler"
GCP_ENTRY_POINT = "http_function"
LAMBDA_TIMEOUT = 900  # seconds: one invocation (Lambda's maximum); a durable run spans many
LAMBDA_MEMORY = 512  # MB
DURABLE_EXECUTION_TIMEOUT = 86_400  # seconds: one day for the whole durable execution
DURABLE_RETENTION_DAYS = 14  # execution history kept after the run ends (1-90)

# Lambda's Python 3.11 runs on Amazon Linux 2 (glibc 2.26): manylinux2014 wheels only; 3.12 and
# 3.13 run on Amazon Linux 2023 (glibc 2.34), which also takes manylinux_2_28 / 2_34 wheels.
_LAMBDA_GLIBC: dict[str, tuple[str, ...]] = {
    "3.11": ("manylinux2014",),
    "3.12": ("manylinux2014", "manylinux_2_28", "manylinux_2_34"),
}
_LAMBDA_GLIBC["3.13"] = _LAMBDA_GLIBC["3.12"]
# Cloud Run functions (gen2) build on Ubuntu 22.04 (glibc 2.35), on x86_64.
_GCP_GLIBC = ("manylinux2014", "manylinux_2_28", "manylinux_2_35")
_WHEEL_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}

# sys.stdlib_module_names is this Python's; these left the standard library in later versions.
_REMOVED_FROM_STDLIB = {
    "3.12": {"asynchat", "asyncore", "distutils", "imp", "smtpd"},
    "3.13": {
        "aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "lib2to3", "mailcap",
        "msilib", "nis", "nntplib", "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau",
        "telnetlib", "uu", "xdrlib", "asynchat", "asyncore", "distutils", "imp", "smtpd",
    },
}  # fmt: skip


@dataclass(frozen=True)
class Options:
    workflow: Path
    target: str
    arch: str
    python: str
    output: Path
    config_files: tuple[Path, ...] = ()
    requirements: tuple[Path, ...] = ()

    @classmethod
    def of(cls, args: argparse.Namespace) -> Options:
        # Required, but checked here: argparse would report a missing option before a
        # mistyped one (--taget), which gets its "did you mean" that way.
        if args.target is None:
            raise DefinitionError("package: which cloud? give --target aws or --target gcp")
        if args.output_dir is None:
            raise DefinitionError("package: where to? give --output DIR")
        if args.target == "gcp" and args.arch != "x86_64":
            raise DefinitionError(
                "package --target gcp: Cloud Run functions run on x86_64 only; "
                "--arch arm64 is for --target aws"
            )
        for flag, files in (("--config", args.config), ("--requirement", args.requirement)):
            for name in files:
                if not Path(name).is_file():
                    raise DefinitionError(f"package {flag} {name}: no such file")
        return cls(
            Path(args.workflow),
            args.target,
            args.arch,
            args.python,
            Path(args.output_dir),
            tuple(Path(f) for f in args.config),
            tuple(Path(f) for f in args.requirement),
        )


def command(args: argparse.Namespace) -> dict[str, Any]:
    """`lamrunner package`: build the bundle; return the record the CLI prints."""
    options = Options.of(args)
    workflow = _validated(options)
    app = AppFiles.of(workflow, options.config_files)
    build = aws if options.target == "aws" else gcp
    return build(options, workflow, app)


def _validated(options: Options) -> Workflow:
    """What `lamrunner validate` checks, and the --config files loaded over its config."""
    from lamrunner.definition.config import build_config
    from lamrunner.definition.workflow import load_workflow

    log = get_logger()
    from lamrunner.deployed import refuse_routing, refuse_subworkflows

    workflow = load_workflow(options.workflow)
    refuse_subworkflows(workflow)
    if options.target == "aws":
        refuse_routing(workflow, "AWS Lambda durable functions")
    build_config(workflow.config, [str(f) for f in options.config_files], (), os.environ)
    log.info("workflow.valid", workflow=workflow.name, steps=len(workflow.steps))
    for note in workflow.warnings:
        log.warning("duration.suspicious", note=note)
    return workflow


# -- the workflow's files -------------------------------------------------------------------


@dataclass
class AppFiles:
    """The files a bundle carries for the workflow, by their path inside the bundle."""

    workflow: str  # the workflow file's path in the bundle
    files: dict[str, Path] = field(default_factory=dict)  # bundle path -> source file
    config: list[str] = field(default_factory=list)  # the --config files' bundle paths
    python: list[tuple[str, Path]] = field(default_factory=list)  # (where, file) to scan
    search: list[Path] = field(default_factory=list)  # folders handlers import from
    modules: list[tuple[str, str]] = field(default_factory=list)  # (where, package.module)
    root: Path = Path()

    @classmethod
    def of(cls, workflow: Workflow, config_files: Iterable[Path]) -> AppFiles:
        path = workflow.path.resolve()
        sources: list[Path] = [path]
        python: list[tuple[str, Path]] = []
        search: list[Path] = []
        modules: list[tuple[str, str]] = []
        for step in workflow.steps:
            where = f"{workflow.path}: steps[{step.index - 1}] ({step.name})"
            handler = step.handler
            if handler.language == "javascript":
                sources.append(Path(handler.location).resolve())
                continue
            module_file = _module_file(handler.func)
            if handler.location.endswith(".py"):  # file.py or file.py:func
                file = Path(handler.location).resolve()
                sources.append(file)
                python.append((where, file))
                _add(search, file.parent)
            elif module_file is not None and module_file.is_relative_to(path.parent):
                top = module_file.relative_to(path.parent).parts[0]  # package.module:func
                sources.extend(_tree(path.parent / top))
                python.extend((where, f) for f in _tree(path.parent / top) if f.suffix == ".py")
                _add(search, path.parent)
            else:  # package.module:func from an installed package: must be installed
                modules.append((where, handler.spec.partition(":")[0]))
        root = Path(os.path.commonpath([str(s.parent) for s in sources]))
        app = cls(path.relative_to(root).as_posix(), python=python, search=search, modules=modules)
        app.root = root
        for source in sources:
            app.add(source.relative_to(root).as_posix(), source)
        names: set[str] = set()
        for config in config_files:
            name, n = config.name, 1
            while name in names:  # two prod.yaml from different folders
                n += 1
                name = f"{config.stem}-{n}{config.suffix}"
            names.add(name)
            app.config.append(app.add(f"{CONFIG_DIR}/{name}", config.resolve()))
        return app

    def add(self, name: str, source: Path) -> str:
        known = self.files.get(name)
        if known is not None and known != source:
            raise DefinitionError(f"package: {source} and {known} would both be {name}")
        self.files[name] = source
        return name

    def manifest(self, options: Options) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "configFiles": self.config,
            "target": options.target,
            "arch": options.arch,
            "python": options.python,
            "lamrunner": lamrunner.__version__,
        }

    def env(self) -> dict[str, str]:
        """The entry points' environment: the workflow, and the config files (`:`-separated)."""
        env = {"LAMRUNNER_WORKFLOW": self.workflow}
        if self.config:
            env["LAMRUNNER_CONFIG"] = ":".join(self.config)
        return env

    def copy_to(self, folder: Path, taken: Iterable[str] = ()) -> None:
        """Copy the files under `folder`, refusing to overwrite what pip installed there."""
        taken = set(taken)
        for name, source in self.files.items():
            top = name.split("/", 1)[0]
            if top in taken:
                raise DefinitionError(
                    f"package: {source} would be {name} in the bundle, where an installed "
                    f"package already has {top}; move or rename it"
                )
        for name, source in sorted(self.files.items()):
            dest = folder / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)

    def add_imported_helpers(self, python: str) -> None:
        """Bundle the modules Python handlers import from beside them (helpers.py, a package
        folder); those are scanned too, so their imports are checked as well."""
        stdlib = stdlib_modules(python)
        scanned = {file for _, file in self.python}
        queue = list(self.python)
        while queue:
            where, file = queue.pop()
            for module, _line in imports_of(file):
                if module.split(".", 1)[0] in stdlib:  # first on sys.path, before the folder
                    continue
                local = _local_module(module, [file.parent, *self.search])
                if local is None:
                    continue
                for helper in _tree(local):
                    if not helper.is_relative_to(self.root):
                        raise DefinitionError(
                            f"{where}: {file} imports {module} from {helper}, which is outside "
                            f"the folder the bundle is made of ({self.root})"
                        )
                    self.add(helper.relative_to(self.root).as_posix(), helper)
                    if helper.suffix == ".py" and helper not in scanned:
                        scanned.add(helper)
                        self.python.append((where, helper))
                        queue.append((where, helper))


def get_logger() -> Any:
    from lamrunner.logs.chain import get_logger

    return get_logger()


def _add(folders: list[Path], folder: Path) -> None:
    if folder not in folders:
        folders.append(folder)


def _module_file(func: Any) -> Path | None:
    module = sys.modules.get(getattr(func, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def _tree(path: Path) -> list[Path]:
    if path.is_file():
        return [path.resolve()]
    return sorted(
        p.resolve()
        for p in path.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def _local_module(module: str, folders: Iterable[Path]) -> Path | None:
    top = module.split(".", 1)[0]
    for folder in folders:
        for candidate in (folder / f"{top}.py", folder / top):
            if candidate.is_file() or (candidate.is_dir() and any(candidate.rglob("*.py"))):
                return candidate
    return None


# -- the handler import check ---------------------------------------------------------------


def imports_of(file: Path) -> Iterator[tuple[str, int]]:
    """The absolute imports of a Python file, as (module, line); imports guarded by
    `try: ... except ImportError` and `if TYPE_CHECKING:` are optional and left out."""
    try:
        tree = ast.parse(file.read_bytes(), str(file))
    except SyntaxError:
        return  # load_workflow imported it: only a file beside it can be this broken
    optional: set[int] = set()
    for node in ast.walk(tree):
        tried = isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers)
        typing_only = isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        if (tried or typing_only) and isinstance(node, ast.Try | ast.If):
            optional.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = ast.unparse(handler.type)
    return any(n in names for n in ("ImportError", "ModuleNotFoundError", "Exception"))


def stdlib_modules(python: str) -> frozenset[str]:
    """The standard library's top-level modules on the target Python."""
    return frozenset(sys.stdlib_module_names - _REMOVED_FROM_STDLIB.get(python, set())) | {
        "__future__"
    }


def installed_modules(folder: Path) -> frozenset[str]:
    """The top-level modules a `pip install --target` folder provides."""
    names: set[str] = set()
    for entry in folder.iterdir():
        if entry.name.endswith((".dist-info", ".data")) or entry.name == "__pycache__":
            continue
        if entry.is_dir():
            names.add(entry.name)
        elif entry.suffix == ".py":
            names.add(entry.stem)
        elif entry.suffix in (".so", ".pyd"):
            names.add(entry.name.split(".", 1)[0])  # _quickjs.abi3.so, x.cpython-312-…so
    return frozenset(names)


def check_imports(app: AppFiles, provided: frozenset[str], python: str, extra: str) -> None:
    """Refuse a bundle in which a Python handler (or a helper it imports) would fail to
    import: every module must be the standard library's, installed, or beside the handler."""
    known = stdlib_modules(python) | provided
    for where, module in app.modules:
        if module.split(".", 1)[0] not in known:
            raise DefinitionError(
                f"{where}: the handler module {module!r} is not in the bundle: not in Python "
                f"{python}'s standard library and not installed with lamrunner[{extra}]; list "
                "its distribution in a requirements file and pass it with --requirement FILE"
            )
    for where, file in app.python:
        for module, line in imports_of(file):
            top = module.split(".", 1)[0]
            if top in known or _local_module(module, [file.parent, *app.search]):
                continue
            raise DefinitionError(
                f"{where}: {file}:{line} imports {module!r}, which the "
                f"bundle does not have: it is not in Python {python}'s standard library, not "
                f"installed with lamrunner[{extra}] and not a file beside the handler; list its "
                "distribution in a requirements file and pass it with --requirement FILE"
            )


# -- lamrunner as a wheel -------------------------------------------------------------------


def build_wheel(folder: Path) -> Path:
    """A wheel of this installation of lamrunner (its package folder as it is now, its
    metadata as installed), so an editable checkout ships what it runs."""
    dist = _distribution()
    metadata = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if not metadata:
        raise DefinitionError("package: lamrunner's installed metadata is missing; reinstall it")
    version = dist.version
    name = f"lamrunner-{version}-py3-none-any.whl"
    info = f"lamrunner-{version}.dist-info"
    package = Path(lamrunner.__file__).resolve().parent
    entries: list[tuple[str, bytes]] = [
        (f"lamrunner/{p.relative_to(package).as_posix()}", p.read_bytes()) for p in _tree(package)
    ]
    entries.append((f"{info}/METADATA", metadata.encode()))
    wheel = "Wheel-Version: 1.0\nGenerator: lamrunner package\nRoot-Is-Purelib: true\n"
    entries.append((f"{info}/WHEEL", (wheel + "Tag: py3-none-any\n").encode()))
    scripts = dist.read_text("entry_points.txt")
    if scripts:
        entries.append((f"{info}/entry_points.txt", scripts.encode()))
    record = "".join(f"{n},sha256={_digest(data)},{len(data)}\n" for n, data in entries)
    entries.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    path = folder / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for entry, data in entries:
            zf.writestr(zipfile.ZipInfo(entry, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return path


def _distribution() -> importlib.metadata.Distribution:
    """lamrunner's installed metadata: a dist-info in site-packages, not a checkout's stale
    lamrunner.egg-info that the current folder may put first on the path."""
    found = list(importlib.metadata.distributions(name="lamrunner"))
    installed = [d for d in found if d.read_text("METADATA")]
    if not (installed or found):
        raise DefinitionError("package: lamrunner is not installed (pip install it first)")
    return (installed or found)[0]


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def extra_requirements(extra: str) -> list[str]:
    """The requirements lamrunner's `[extra]` adds, from the installed metadata."""
    found = []
    for requirement in _distribution().requires or []:
        spec, _, marker = requirement.partition(";")
        if re.search(rf"""extra\s*==\s*['"]{extra}['"]""", marker):
            found.append(spec.strip())
    if not found:
        raise DefinitionError(
            f"package: this installation of lamrunner does not know its [{extra}] extra; "
            "reinstall it (pip install -e . in its checkout)"
        )
    return found


def pip_install(
    folder: Path, requirements: list[str], options: Options, platforms: Iterable[str]
) -> None:
    """`pip install --target` for the function's platform: CPython <ver>, binary wheels only."""
    arch = _WHEEL_ARCH[options.arch]
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--no-input", "--no-compile", "--target", str(folder)]
    for platform in platforms:
        command += ["--platform", f"{platform}_{arch}"]
    command += ["--implementation", "cp", "--python-version", options.python]
    command += ["--only-binary=:all:", *requirements]
    for file in options.requirements:
        command += ["--requirement", str(file)]
    log = get_logger()
    log.info("package.pip", target=str(folder), platforms=list(platforms), python=options.python)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.stdout.strip() or done.stderr.strip():
        log.debug("package.pip_output", output=(done.stdout + done.stderr).strip())
    if done.returncode != 0:
        lines = [
            line for line in done.stderr.splitlines() if line.strip() and "WARNING" not in line
        ]
        raise DefinitionError(
            f"package: pip could not install the bundle's packages for "
            f"{options.target} {options.arch}, Python {options.python} (binary wheels only): "
            + " ".join(lines[-3:] or [f"exit status {done.returncode}"])
        )
    shutil.rmtree(folder / "bin", ignore_errors=True)  # console scripts for this machine
    for url in folder.glob("*.dist-info/direct_url.json"):
        url.unlink()  # where the lamrunner wheel was built: a scratch path, not the bundle's


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _bundle_name(workflow: Workflow, options: Options) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", workflow.name).strip("-").lower() or "workflow"
    return f"{slug}-{options.target}-{options.arch}-py{options.python}"


def _warn_without_entry_point(module: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:
        found = False
    if not found:
        get_logger().warning(
            "package.no_entry_point",
            module=module,
            note=f"this lamrunner has no {module} yet: the function will not start until it does",
        )


# -- aws ------------------------------------------------------------------------------------


def aws(options: Options, workflow: Workflow, app: AppFiles) -> dict[str, Any]:
    log = get_logger()
    _warn_without_entry_point("lamrunner.aws")
    app.add_imported_helpers(options.python)
    options.output.mkdir(parents=True, exist_ok=True)
    name = _bundle_name(workflow, options)
    zip_path = options.output / f"{name}.zip"
    template_path = options.output / "template.yaml"
    with tempfile.TemporaryDirectory(prefix="lamrunner-package-") as scratch:
        wheel = build_wheel(Path(scratch))
        build = Path(scratch) / "bundle"
        pip_install(build, [f"{wheel}[aws]"], options, _LAMBDA_GLIBC[options.python])
        provided = installed_modules(build)
        check_imports(app, provided, options.python, "aws")
        app.copy_to(build, provided)
        (build / MANIFEST).write_text(json.dumps(app.manifest(options), indent=2) + "\n")
        _precompile(build, options.python)
        unpacked = _size(build)
        _write_zip(build, zip_path)
    template_path.write_text(sam_template(workflow, options, app, zip_path.name), encoding="utf-8")
    log.info("package.written", zip=str(zip_path), bytes=zip_path.stat().st_size)
    deploy = f"sam deploy --guided --template-file {template_path}"
    return {
        "target": "aws",
        "arch": options.arch,
        "python": options.python,
        "workflow": workflow.name,
        "workflowFile": app.workflow,
        "artifacts": [str(zip_path), str(template_path)],
        "sizeBytes": {"zip": zip_path.stat().st_size, "unpacked": unpacked},
        "deploy": deploy,
    }


def _precompile(folder: Path, python: str) -> None:
    """Bytecode in the zip: Lambda's code folder is read-only, so without it every cold start
    compiles every module again (about 0.8 s more for lamrunner.aws). Only this interpreter's
    version can be compiled; `unchecked-hash` pycs skip the timestamp check, which a zip's
    fixed timestamps would defeat."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python != here:
        get_logger().warning(
            "package.no_bytecode",
            note=f"the function's Python is {python} and this one {here}: the zip ships "
            f"without bytecode and compiles on each cold start; run `lamrunner package` with "
            f"Python {python} to include it",
        )
        return
    ok = compileall.compile_dir(
        folder,
        quiet=2,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not ok:
        get_logger().warning("package.bytecode_incomplete", note="some modules did not compile")


def _write_zip(folder: Path, path: Path) -> None:
    """The bundle's files at the zip's root, sorted, with their permissions (a .so stays
    executable) and a fixed timestamp, so the same input gives the same zip."""
    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(file.relative_to(folder).as_posix(), (1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if os.access(file, os.X_OK) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, file.read_bytes())
    partial.replace(path)


def sam_template(workflow: Workflow, options: Options, app: AppFiles, code_uri: str) -> str:
    """A SAM template for a Lambda durable function running the bundle."""
    logical = "".join(w.capitalize() for w in re.findall(r"[A-Za-z0-9]+", workflow.name))
    logical = (logical if logical[:1].isalpha() else f"Workflow{logical}") + "Function"
    env = "".join(f"          {k}: {json.dumps(v)}\n" for k, v in app.env().items())
    description = json.dumps(f"lamrunner workflow {workflow.name} as a durable Lambda function")
    return f"""\
# Made by `lamrunner package --target aws`: deploy with `sam deploy --guided`.
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Description: {description}

Resources:
  {logical}:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {json.dumps(code_uri)}
      Handler: {AWS_HANDLER}
      Runtime: python{options.python}
      Architectures:
        - {options.arch}
      Timeout: {LAMBDA_TIMEOUT}        # seconds per invocation; a durable run spans many
      MemorySize: {LAMBDA_MEMORY}
      # Durable functions are invoked by a qualified ARN: a published version or an alias.
      AutoPublishAlias: live
      DurableConfig:
        ExecutionTimeout: {DURABLE_EXECUTION_TIMEOUT}   # seconds for the whole run (1 day)
        RetentionPeriodInDays: {DURABLE_RETENTION_DAYS}
      Environment:
        Variables:
{env}
Outputs:
  FunctionAlias:
    Description: the alias to invoke (durable executions need a qualified ARN)
    Value: !Ref {logical}.Alias
"""


# -- gcp ------------------------------------------------------------------------------------


def gcp(options: Options, workflow: Workflow, app: AppFiles) -> dict[str, Any]:
    log = get_logger()
    _warn_without_entry_point("lamrunner.gcp")
    app.add_imported_helpers(options.python)
    folder = options.output
    _claim(folder)
    extras = extra_requirements("gcp")
    with tempfile.TemporaryDirectory(prefix="lamrunner-package-") as scratch:
        wheel = build_wheel(Path(scratch))
        check = Path(scratch) / "installed"
        pip_install(check, [f"{wheel}[gcp]"], options, _GCP_GLIBC)
        provided = installed_modules(check)
        check_imports(app, provided, options.python, "gcp")
        installed = _size(check)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        app.copy_to(folder, {"main.py", "requirements.txt", "README.txt", wheel.name})
        shutil.copyfile(wheel, folder / wheel.name)
    (folder / MANIFEST).write_text(json.dumps(app.manifest(options), indent=2) + "\n")
    (folder / "main.py").write_text(
        '"""The function\'s entry point (made by `lamrunner package --target gcp`)."""\n\n'
        f"from lamrunner.gcp import {GCP_ENTRY_POINT}\n\n"
        f'__all__ = ["{GCP_ENTRY_POINT}"]\n',
        encoding="utf-8",
    )
    lines = [
        "# lamrunner, shipped as a wheel beside this file, and its [gcp] extra",
        f"./{wheel.name}",
        *extras,
    ]
    for file in options.requirements:
        lines += [f"# from {file.name}", *_requirement_lines(file)]
    (folder / "requirements.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    deploy = gcloud_command(workflow, options, app, str(folder))
    (folder / "README.txt").write_text(
        f"lamrunner workflow {workflow.name!r}, packaged for Cloud Run functions (gen2).\n\n"
        f"The workflow is {app.workflow} (LAMRUNNER_WORKFLOW); lamrunner-package.json lists\n"
        "the bundle's files for the entry point. Deploy it from this folder with:\n\n"
        f"  {gcloud_command(workflow, options, app, '.')}\n",
        encoding="utf-8",
    )
    log.info("package.written", folder=str(folder), deploy=deploy)
    return {
        "target": "gcp",
        "arch": options.arch,
        "python": options.python,
        "workflow": workflow.name,
        "workflowFile": app.workflow,
        "artifacts": [str(folder)],
        "sizeBytes": {"source": _size(folder), "installed": installed + _size(folder)},
        "deploy": deploy,
    }


def gcloud_command(workflow: Workflow, options: Options, app: AppFiles, source: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", workflow.name.lower()).strip("-") or "workflow"
    env = ",".join(f"{k}={v}" for k, v in app.env().items())
    return (
        f"gcloud functions deploy {name} --gen2 --runtime python{options.python.replace('.', '')}"
        f" --entry-point {GCP_ENTRY_POINT} --trigger-http --source {source}"
        f" --set-env-vars {env}"
    )


def _requirement_lines(file: Path) -> list[str]:
    return [
        line.strip()
        for line in file.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _claim(folder: Path) -> None:
    """The gcp source folder is replaced whole: only an empty one, or one this command made."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise DefinitionError(f"package --output {folder}: exists and is not a folder")
    if any(folder.iterdir()) and not (folder / MANIFEST).is_file():
        raise DefinitionError(
            f"package --output {folder}: the folder is not empty and was not made by "
            "lamrunner package; give an empty or new folder"
        )
