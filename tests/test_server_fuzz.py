"""A property-based run over `lamrunner serve` from its own /openapi.json (schemathesis): the
real server in a subprocess on 127.0.0.1, every operation fed generated parameters and bodies.
No 5xx but a documented failed run, every answer as documented, the server alive after."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

KEY = "fuzz-key-2b6d"
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 25


def _flows(root: Path) -> Path:
    """Plain data steps (no network): one that answers, one that fails, one lam.response."""
    flows = root / "flows"
    flows.mkdir()
    (flows / "echo.py").write_text("def transform(data):\n    return {'got': data['input']}\n")
    (flows / "fail.py").write_text("def transform(data):\n    raise ValueError('no')\n")
    (flows / "answer.py").write_text(
        "def transform(data):\n    return {'lam.response': {'statusCode': 201, 'message': 'ok'}}\n"
    )
    for name, handler in (("echo", "echo.py"), ("fail", "fail.py"), ("answer", "answer.py")):
        doc = {"name": name, "steps": [{"handler": handler}, {"handler": "echo.py"}]}
        (flows / f"{name}.json").write_text(json.dumps(doc))
    return flows


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    env = {**os.environ, "FUZZ_KEY": KEY, "LAMRUNNER_STORE": str(root / "runs.sqlite3")}
    args = ["serve", str(_flows(root)), "--port", "0", "--api-key-env", "FUZZ_KEY", "-q"]
    log = (root / "server.log").open("w")  # a file, not a pipe: nothing can block on it
    process = subprocess.Popen(
        [sys.executable, "-m", "lamrunner", *args, "--max-body", "100KB"],
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        text=True,
    )
    line = process.stdout.readline()
    assert line, (root / "server.log").read_text()
    url = json.loads(line)["listening"]
    yield url, process
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=15)
    log.close()
    assert process.returncode == 0, (root / "server.log").read_text()[-2000:]


def test_every_operation_answers_as_documented_under_generated_input(server):
    url, process = server
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers={"X-API-KEY": KEY})
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14  # every endpoint of the API, the page's too
    session = requests.Session()
    failures: list[str] = []
    for operation in operations:
        try:
            _fuzz(operation, url, session)
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then fail
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert process.poll() is None, "the server died"
    assert session.get(f"{url}/health", timeout=5).json() == {"ok": True}
    jobs = session.get(f"{url}/jobs?limit=500", headers={"X-API-KEY": KEY}, timeout=5).json()
    assert len(jobs["jobs"]) >= 10  # the generated executes ran jobs


def _fuzz(operation, url: str, session: requests.Session) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        try:
            response = case.call(
                base_url=url, session=session, headers={"X-API-KEY": KEY}, timeout=15
            )
        except requests.ConnectionError as exc:
            raise AssertionError(f"{exc} for {case.as_curl_command()}") from None
        case.validate_response(response, checks=CHECKS)
        if response.status_code >= 500:
            body = response.json()
            assert body["error"]["type"] != "InternalError", body
            assert "job_id" in body, body  # a failed run names its job; nothing else is a 5xx
        assert "Traceback" not in response.text

    run()
