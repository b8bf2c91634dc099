"""`lamrunner package`: the cloud-function bundles, built for real by pip from the package index.

Each bundle is built once per session (the aws stack for x86_64 and arm64, the gcp folder);
pip's downloads are cached in a folder under pytest's temporary folder, never in $HOME. The
bundles are checked the way the cloud would use them: the zip's layout and the platform tags of
its wheels, the SAM template through cfn-lint, the x86_64 bundle imported by this very Python
with nothing but the bundle on its path and running a sample to SUCCESS under the durable
testing runner (the one thing not in the bundle), the gcp folder's main.py imported.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "process-dataset.yaml"
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"  # the aws x86_64 build's Python


@dataclass
class Result:
    code: int
    record: Any
    stderr: str


@pytest.fixture(scope="session")
def pip_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("pip-cache")
    return {**os.environ, "PIP_CACHE_DIR": str(cache), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def package(env: dict[str, str], *args: str | Path) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "lamrunner", "package", *map(str, args), "--log-format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    return Result(done.returncode, json.loads(done.stdout), done.stderr)


@pytest.fixture(scope="session")
def aws_x86(pip_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Result:
    out = tmp_path_factory.mktemp("aws-x86_64")
    return package(pip_env, SAMPLE, "--target", "aws", "--python", HERE, "--output", out)


@pytest.fixture(scope="session")
def aws_arm(pip_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Result:
    out = tmp_path_factory.mktemp("aws-arm64")
    return package(pip_env, SAMPLE, "--target", "aws", "--arch", "arm64", "--output", out)


@pytest.fixture(scope="session")
def gcp(pip_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Result:
    out = tmp_path_factory.mktemp("gcp") / "source"
    return package(pip_env, SAMPLE, "--target", "gcp", "--output", out)


def _zip(result: Result) -> zipfile.ZipFile:
    assert result.code == 0, (result.record, result.stderr[-2000:])
    zips = [a for a in result.record["artifacts"] if a.endswith(".zip")]
    assert len(zips) == 1, result.record
    return zipfile.ZipFile(zips[0])


def _wheel_tags(names: list[str], archive: zipfile.ZipFile, dist: str) -> list[str]:
    wheel = next(n for n in names if n.startswith(f"{dist}-") and n.endswith(".dist-info/WHEEL"))
    text = archive.read(wheel).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def test_aws_zip_holds_the_workflow_lamrunner_and_linux_x86_64_wheels(aws_x86: Result) -> None:
    record = aws_x86.record
    assert record["target"] == "aws" and record["arch"] == "x86_64" and record["python"] == HERE
    assert record["workflowFile"] == "samples/process-dataset.yaml"
    archive = _zip(aws_x86)
    names = archive.namelist()
    # The workflow and its handlers keep their layout: ../handlers/x still resolves.
    for name in ("samples/process-dataset.yaml", "handlers/start_job.js", "handlers/summarize.py"):
        assert name in names, name
    assert archive.read("samples/process-dataset.yaml") == SAMPLE.read_bytes()
    manifest = json.loads(archive.read("lamrunner-package.json"))
    assert manifest["workflow"] == "samples/process-dataset.yaml"
    assert manifest["configFiles"] == []
    for module in ("lamrunner/__init__.py", "lamrunner/cli/package.py", "yaml/__init__.py"):
        assert module in names, module
    for top in ("aiohttp/", "quickjs/", "structlog/", "aws_durable_execution_sdk_python/"):
        assert any(n.startswith(top) for n in names), top
    assert not any(n.startswith("bin/") for n in names)
    # Built with the function's own Python: bytecode ships, so a cold start compiles nothing.
    tag = f"cpython-{HERE.replace('.', '')}"
    for module in ("lamrunner/aws/__pycache__/durable", "aiohttp/__pycache__/client"):
        assert f"{module}.{tag}.pyc" in names, module
    # Binary wheels for the Lambda platform, not this machine's: tags and .so names say so.
    for dist in ("aiohttp", "pyyaml", "quickjs_ng"):
        tags = _wheel_tags(names, archive, dist)
        assert any("manylinux" in t and t.endswith("x86_64") for t in tags), (dist, tags)
    cp = f"cpython-{HERE.replace('.', '')}-x86_64-linux-gnu.so"
    assert any(n.startswith("aiohttp/_http_parser.") and n.endswith(cp) for n in names)
    sdk = _wheel_tags(names, archive, "aws_durable_execution_sdk_python")
    assert sdk == ["py3-none-any"], sdk
    sizes = record["sizeBytes"]
    assert sizes["zip"] == Path(record["artifacts"][0]).stat().st_size
    assert sizes["zip"] < sizes["unpacked"] < 250 * 1024 * 1024  # Lambda's unzipped limit


def test_aws_bundle_imports_with_nothing_but_itself_on_the_path(
    aws_x86: Result, tmp_path: Path
) -> None:
    """This machine is x86_64 Linux running the Python it was built for: as on Lambda, the
    unpacked zip alone (no site-packages: -S) must give lamrunner a workflow and a run."""
    _zip(aws_x86).extractall(tmp_path)
    probe = textwrap.dedent(
        """
        import sys
        sys.path[:0] = [sys.argv[1]]
        import aws_durable_execution_sdk_python, aiohttp, quickjs, structlog, yaml
        import lamrunner
        assert lamrunner.__file__.startswith(sys.argv[1]), lamrunner.__file__
        workflow = lamrunner.load_workflow(sys.argv[1] + "/samples/process-dataset.yaml")
        print(workflow.name, [s.handler.language for s in workflow.steps])
        """
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "process-dataset ['javascript', 'python']"


@pytest.fixture
def jobapi_url() -> Iterator[str]:
    """samples/jobapi.py as a subprocess on 127.0.0.1 (a free port), with fast job phases."""
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "samples" / "jobapi.py"), "--port", "0", "--quiet",
         "--phase-seconds", "0.2"],
        stdout=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "JOBAPI_API_KEY"},  # its key: dev-key
    )  # fmt: skip
    assert server.stdout is not None
    stdout = server.stdout
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    try:
        reader.start()
        reader.join(30)
        line = lines[0].strip() if lines else ""
        assert line.startswith("jobapi listening on http://127.0.0.1:"), line
        yield line.rsplit(" ", 1)[1]
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        stdout.close()


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runner_only(bundle: Path, folder: Path) -> set[str]:
    """`folder` gets the durable testing runner and those of its dependencies the bundle lacks
    (links into this venv), nothing else; returns the distributions linked."""
    held = {_norm(p.name.split("-", 1)[0]) for p in bundle.glob("*.dist-info")}
    todo, linked = ["aws-durable-execution-sdk-python-testing"], set()
    while todo:
        name = _norm(todo.pop())
        if name in linked or name in held:
            continue
        linked.add(name)
        dist = importlib.metadata.distribution(name)
        todo += [re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0] for r in dist.requires or []
                 if "extra ==" not in r]  # fmt: skip
        tops = {f.parts[0] for f in dist.files or () if f.parts[0] not in ("..", "__pycache__")}
        for top in tops:
            (folder / top).symlink_to(Path(str(dist.locate_file(top))))
    return linked


def test_aws_bundle_runs_a_sample_under_the_durable_testing_runner(
    aws_x86: Result, tmp_path: Path, jobapi_url: str
) -> None:
    """The unpacked zip, in an empty folder, is all lamrunner has: `python -I -S` (no
    site-packages, no .pth files, so not this checkout's editable lamrunner) with the bundle
    first on sys.path and only the testing runner (not in the bundle) appended after it runs
    the bundled sample to SUCCESS as a durable execution, against the job API, as Lambda
    would run it: the handler the template names, the workflow its environment names."""
    bundle, runner_path = tmp_path / "bundle", tmp_path / "runner-only"
    bundle.mkdir()
    runner_path.mkdir()
    _zip(aws_x86).extractall(bundle)
    manifest = json.loads((bundle / "lamrunner-package.json").read_text())
    template = Path(aws_x86.record["artifacts"][1]).read_text()
    assert f'LAMRUNNER_WORKFLOW: "{manifest["workflow"]}"' in template
    assert "Handler: lamrunner.aws.durable_handler" in template
    linked = _runner_only(bundle, runner_path)
    assert "aws-durable-execution-sdk-python" not in linked  # the bundle's SDK serves both
    probe = textwrap.dedent(
        """
        import json, sys
        sys.path[:0] = [sys.argv[1]]
        sys.path.append(sys.argv[2])
        from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner
        from lamrunner.aws import durable_handler
        event = {"input": {"datasetId": "bundled-ds"}}
        with DurableFunctionTestRunner(handler=durable_handler) as runner:
            result = runner.run(
                input=json.dumps(event), execution_timeout=30, execution_name="bundle-run"
            )
        names = ("lamrunner", "aiohttp", "quickjs", "yaml", "structlog",
                 "aws_durable_execution_sdk_python", "aws_durable_execution_sdk_python_testing")
        print(json.dumps({
            "status": result.status.name,
            "record": json.loads(result.result) if result.result else None,
            "error": str(result.error) if result.error else None,
            "from": {n: sys.modules[n].__file__ for n in names},
            "files": [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())],
        }))
        """
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "LAMRUNNER_")) and k not in ("JOBAPI_URL", "PROCESSOR_API_KEY")
    }
    env.update(
        LAMRUNNER_WORKFLOW=manifest["workflow"],
        JOBAPI_URL=jobapi_url,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",  # dummies: the in-process service checks nothing
        AWS_DEFAULT_REGION="us-west-2",
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(bundle), str(runner_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=bundle,  # the function's code root, as /var/task is on Lambda
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("lamrunner", "aiohttp", "quickjs", "yaml", "structlog"):
        assert report["from"][name].startswith(f"{bundle}/"), (name, report["from"][name])
    sdk = report["from"]["aws_durable_execution_sdk_python"]
    assert sdk.startswith(f"{bundle}/"), sdk
    testing = report["from"]["aws_durable_execution_sdk_python_testing"]
    assert testing.startswith(f"{runner_path}/"), testing
    site_packages = str(Path(importlib.metadata.distribution("aiohttp").locate_file("")))
    assert not [f for f in report["files"] if f.startswith(site_packages)], report["files"]

    assert report["status"] == "SUCCEEDED", (report["error"], done.stderr[-3000:])
    record = report["record"]
    assert record["status"] == "SUCCESS" and record["error"] is None, record
    assert record["runId"] == "bundle-run" and record["workflow"] == "process-dataset"
    result = record["result"]
    assert result["datasetId"] == "bundled-ds" and result["status"] == "completed", result
    assert result["location"].endswith("bundled-ds.parquet") and result["attempts"] >= 2


def test_aws_template_is_a_durable_function_and_passes_cfn_lint(aws_x86: Result) -> None:
    template = Path(aws_x86.record["artifacts"][1])
    assert template.name == "template.yaml"
    text = template.read_text()
    zip_name = Path(aws_x86.record["artifacts"][0]).name
    for line in (
        "Type: AWS::Serverless::Function",
        "Handler: lamrunner.aws.durable_handler",
        f"Runtime: python{HERE}",
        "- x86_64",
        f'CodeUri: "{zip_name}"',
        "Timeout: 900",
        "MemorySize: 512",
        "DurableConfig:",
        "ExecutionTimeout: 86400",
        "RetentionPeriodInDays: 14",
        'LAMRUNNER_WORKFLOW: "samples/process-dataset.yaml"',
    ):
        assert line in text, line
    lint = Path(sys.executable).with_name("cfn-lint")
    done = subprocess.run(
        [str(lint), str(template)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # cfn-lint does check the durable properties: a misspelt one fails.
    broken = template.with_name("broken.yaml")
    broken.write_text(text.replace("DurableConfig:", "DurableConfg:"))
    done = subprocess.run(
        [str(lint), str(broken)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode != 0 and "DurableConfg" in done.stdout, done.stdout


def test_aws_arm64_bundle_has_aarch64_wheels(aws_arm: Result) -> None:
    assert aws_arm.record["arch"] == "arm64" and aws_arm.record["python"] == "3.12"
    archive = _zip(aws_arm)
    names = archive.namelist()
    assert "samples/process-dataset.yaml" in names and "lamrunner/__init__.py" in names
    for dist in ("aiohttp", "pyyaml", "quickjs_ng"):
        tags = _wheel_tags(names, archive, dist)
        assert any("manylinux" in t and t.endswith("aarch64") for t in tags), (dist, tags)
    assert any(n.endswith("cpython-312-aarch64-linux-gnu.so") for n in names)
    template = Path(aws_arm.record["artifacts"][1]).read_text()
    assert "- arm64" in template and "Runtime: python3.12" in template
    # Bytecode only for the Python that runs `package`; for another, a warning says so.
    compiled = any("/__pycache__/" in n for n in names)
    assert compiled == (HERE == "3.12")
    assert ("package.no_bytecode" in aws_arm.stderr) == (HERE != "3.12"), aws_arm.stderr[-800:]


def test_gcp_folder_has_the_entry_point_requirements_and_workflow(gcp: Result) -> None:
    assert gcp.code == 0, (gcp.record, gcp.stderr[-2000:])
    folder = Path(gcp.record["artifacts"][0])
    for name in ("main.py", "requirements.txt", "README.txt", "lamrunner-package.json"):
        assert (folder / name).is_file(), name
    for name in ("samples/process-dataset.yaml", "handlers/start_job.js", "handlers/summarize.py"):
        assert (folder / name).is_file(), name
    assert "from lamrunner.gcp import http_function" in (folder / "main.py").read_text()
    wheels = list(folder.glob("lamrunner-*-py3-none-any.whl"))
    assert len(wheels) == 1
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert f"./{wheels[0].name}" in requirements
    assert "functions-framework>=3" in requirements and "google-cloud-tasks>=2" in requirements
    with zipfile.ZipFile(wheels[0]) as wheel:  # the wheel is this checkout's lamrunner
        assert (
            wheel.read("lamrunner/cli/package.py")
            == (ROOT / "lamrunner" / "cli" / "package.py").read_bytes()
        )
    deploy = gcp.record["deploy"]
    assert deploy.startswith("gcloud functions deploy process-dataset --gen2 --runtime python312")
    assert f"--entry-point http_function --trigger-http --source {folder}" in deploy
    assert "LAMRUNNER_WORKFLOW=samples/process-dataset.yaml" in deploy
    assert "--source ." in (folder / "README.txt").read_text()
    assert gcp.record["sizeBytes"]["source"] < gcp.record["sizeBytes"]["installed"]


def test_gcp_main_imports_the_entry_point(gcp: Result) -> None:
    """`import main` from the source folder, as functions-framework does, with the
    environment the deploy command sets: the entry point loads the bundled workflow and
    answers (tests/test_gcp.py serves it for real, runs included)."""
    folder = Path(gcp.record["artifacts"][0])
    probe = textwrap.dedent(
        """
        import json, main

        class Request:
            def __init__(self, method, body):
                self.method, self.body = method, body
            def get_data(self):
                return self.body

        for method, body in (("GET", b""), ("POST", b'{"inptu": {}}')):
            text, status, headers = main.http_function(Request(method, body))
            print(status, headers["Content-Type"], json.loads(text)["error"]["message"])
        """
    )
    env = {**os.environ, "LAMRUNNER_WORKFLOW": gcp.record["workflowFile"]}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=folder,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    get, post = done.stdout.strip().splitlines()
    assert get == "405 application/json GET: not supported; POST a JSON body"
    assert post.startswith("400 application/json request body: unknown key 'inptu'"), post


def test_a_handler_importing_a_missing_module_is_refused(
    pip_env: dict[str, str], tmp_path: Path, aws_x86: Result
) -> None:
    """Checked against the bundle, before the zip is written (aws_x86 warmed pip's cache).
    The handler never imports it at load time, so `validate` alone would pass it."""
    (tmp_path / "flow.yaml").write_text("name: needs-requests\nsteps:\n  - handler: fetch.py\n")
    (tmp_path / "fetch.py").write_text(
        "import os\n\ndef transform(data):\n    import requests_not_installed_xyz\n"
        "    return requests_not_installed_xyz.get(os.environ['URL']).json()\n"
    )
    # ... and a helper beside a handler is bundled, so what it imports is checked too.
    (tmp_path / "helped.yaml").write_text("name: helped\nsteps:\n  - handler: uses.py\n")
    (tmp_path / "uses.py").write_text("import helper\n\ndef transform(data):\n    return 1\n")
    (tmp_path / "helper.py").write_text(
        "import json\n\ndef get():\n    from requests_not_installed_xyz.api import get\n"
    )
    for flow, culprit, line in (("flow.yaml", "fetch.py", 4), ("helped.yaml", "helper.py", 4)):
        out = tmp_path / f"out-{flow}"
        result = package(pip_env, tmp_path / flow, "--target", "aws", "--output", out)
        assert result.code == 2, result.record
        assert result.record["error"]["type"] == "DefinitionError"
        message = result.record["error"]["message"]
        assert f"{tmp_path / culprit}:{line} imports 'requests_not_installed_xyz" in message
        assert "--requirement" in message
        assert not list(out.glob("*.zip"))


def test_bad_workflow_and_bad_options_are_refused_with_the_usual_record(
    pip_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "bad.yaml").write_text("name: bad\nstpes: []\n")
    cases = [
        ((tmp_path / "bad.yaml", "--target", "aws", "--output", tmp_path), "did you mean 'steps'"),
        ((SAMPLE, "--target", "azure", "--output", tmp_path), "choose from aws, gcp"),
        ((SAMPLE, "--taget", "aws", "--output", tmp_path), "did you mean '--target'"),
        ((SAMPLE, "--target", "aws", "--arch", "arm", "--output", tmp_path), "'arm64'"),
        ((SAMPLE, "--target", "gcp", "--arch", "arm64", "--output", tmp_path), "x86_64 only"),
        ((SAMPLE, "--output", tmp_path), "--target aws or --target gcp"),
        ((SAMPLE, "--target", "aws"), "--output DIR"),
    ]
    for args, expected in cases:
        result = package(pip_env, *args)
        assert result.code == 2, (args, result.record)
        assert result.record["runId"] is None and result.record["status"] == "FAILED"
        assert expected in result.record["error"]["message"], (args, result.record)
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.yaml"]  # nothing was written


def test_gcp_refuses_to_replace_a_folder_it_did_not_make(
    pip_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    result = package(pip_env, SAMPLE, "--target", "gcp", "--output", tmp_path)
    assert result.code == 2 and "not empty" in result.record["error"]["message"]
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_config_files_and_helper_modules_are_bundled(
    pip_env: dict[str, str], tmp_path: Path, gcp: Result
) -> None:
    flows = tmp_path / "flows"
    (flows / "lib").mkdir(parents=True)
    (flows / "flow.yaml").write_text("name: helped\nsteps:\n  - handler: step.py\n")
    (flows / "step.py").write_text("from lib import tools\n\ndef transform(data):\n    return 1\n")
    (flows / "lib" / "__init__.py").write_text("")
    (flows / "lib" / "tools.py").write_text("import json\n")
    (tmp_path / "prod.yaml").write_text("apiKey: k\n")
    out = tmp_path / "out"
    result = package(
        pip_env, flows / "flow.yaml", "--target", "gcp", "--config", tmp_path / "prod.yaml",
        "--output", out,
    )  # fmt: skip
    assert result.code == 0, (result.record, result.stderr[-2000:])
    for name in ("flow.yaml", "step.py", "lib/__init__.py", "lib/tools.py", "config/prod.yaml"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "lamrunner-package.json").read_text())
    assert manifest["workflow"] == "flow.yaml" and manifest["configFiles"] == ["config/prod.yaml"]
    assert "LAMRUNNER_CONFIG=config/prod.yaml" in result.record["deploy"]
