"""Declarative poll steps (`poll:` and seed 000's POLL_EXTERNAL_API) against real servers.

Each runs through the real engine against the `api` fixture (aiohttp on 127.0.0.1); delays
are milliseconds so the polls finish at once.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Reply, ScriptedAPI, WorkflowDir, run_path
from faultserver import closed_port_url

from lamrunner.definition.workflow import load_workflow
from lamrunner.errors import DefinitionError
from lamrunner.store.sqlite import RunStore

FAST = {"interval": "10ms", "maxAttempts": 5}


def poll_step(api: ScriptedAPI, path: str = "/jobs/1", **fields: Any) -> dict[str, Any]:
    return {"name": "wait", "poll": {"url": api.url + path, **FAST, **fields}}


async def test_a_poll_step_polls_until_its_jsonpath_success_condition_holds(
    wf: WorkflowDir, api: ScriptedAPI
) -> None:
    api.script(
        "GET",
        "/jobs/1",
        Reply(json={"status": "RUNNING"}),
        Reply(json={"status": "RUNNING"}),
        Reply(json={"status": "COMPLETED", "data": {"rows": 3}}, headers={"X-Job": "1"}),
    )
    path = wf.workflow([poll_step(api, successCondition="$.status == 'COMPLETED'")])

    record = await run_path(path)

    assert record["status"] == "SUCCESS", record["error"]
    assert len(api.requests_to("/jobs/1")) == 3
    entry = record["gwo"]["step_1"]
    assert entry["response"] == {"status": "COMPLETED", "data": {"rows": 3}}
    assert entry["status"] == "success"
    assert entry["pollCount"] == 3
    assert entry["responseCode"] == 200
    assert entry["responseHeaders"]["x-job"] == "1"
    assert json.loads(entry["responseBody"]) == entry["response"]
    assert entry["responseJson"] == entry["response"]
    assert entry["processedUrl"] == api.url + "/jobs/1"
    assert entry["interval"] == 0.01
    assert entry["finalResponse"]["status"] == 200
    assert entry["finalResponse"]["data"] == entry["response"]
    assert entry["http"]["status"] == 200
    assert record["result"] == entry["response"]


async def test_failure_condition_fails_the_step_with_polling_failed_and_records_how(
    wf: WorkflowDir, api: ScriptedAPI
) -> None:
    api.script(
        "GET", "/jobs/1", Reply(json={"status": "RUNNING"}), Reply(json={"status": "CANCELLED"})
    )
    path = wf.workflow(
        [
            poll_step(
                api,
                successCondition="$.status == 'COMPLETED'",
                failureCondition="$.status == 'FAILED' || $.status == 'CANCELLED'",
            )
        ]
    )

    record = await run_path(path)

    assert record["status"] == "FAILED"
    assert record["error"]["type"] == "PollingFailed"
    assert record["error"]["step"] == "wait"
    assert "CANCELLED" in record["error"]["message"]  # the last response's excerpt
    entry = record["gwo"]["step_1"]
    assert entry["status"] == "failure"
    assert entry["pollCount"] == 2
    assert entry["responseCode"] == 200
    assert entry["response"] == {"status": "CANCELLED"}
    assert len(api.requests_to("/jobs/1")) == 2


async def test_failure_is_checked_only_when_success_does_not_hold(
    wf: WorkflowDir, api: ScriptedAPI
) -> None:
    api.script("GET", "/jobs/1", Reply(json={"done": True, "error": "stale"}))
    path = wf.workflow([poll_step(api, successCondition="$.done", failureCondition="$.error")])

    record = await run_path(path)

    assert record["status"] == "SUCCESS", record["error"]


async def test_a_poll_that_never_succeeds_is_exhausted(wf: WorkflowDir, api: ScriptedAPI) -> None:
    api.script("GET", "/jobs/1", Reply(json={"status": "RUNNING"}))
    path = wf.workflow([poll_step(api, successCondition="$.status == 'COMPLETED'")])

    record = await run_path(path)

    assert record["error"]["type"] == "PollingExhausted"
    assert record["gwo"]["step_1"]["status"] == "exhausted"
    assert record["gwo"]["step_1"]["pollCount"] == 5
    assert len(api.requests_to("/jobs/1")) == 5


async def test_a_js_condition_over_ctx_works_as_in_loop_until(
    wf: WorkflowDir, api: ScriptedAPI
) -> None:
    api.script("GET", "/jobs/1", Reply(json={"n": 1}), Reply(json={"n": 2}))
    path = wf.workflow(
        [poll_step(api, successCondition="(ctx) => ctx.response.n > 1 && ctx.attempt === 2")]
    )

    record = await run_path(path)

    assert record["status"] == "SUCCESS", record["error"]
    assert record["gwo"]["step_1"]["pollCount"] == 2


async def test_ignore_intermediate_failures_polls_through_503s(
    wf: WorkflowDir, api: ScriptedAPI
) -> None:
    api.script(
        "GET",
        "/jobs/1",
        Reply(503, text="warming up"),
        Reply(503, json={"status": "COMPLETED"}),  # not offered to the condition
        Reply(json={"status": "RUNNING"}),
        Reply(json={"status": "COMPLETED"}),
    )
    path = wf.workflow(
        [
            poll_step(
                api,
                successCondition="$.status == 'COMPLETED'",
                ignoreIntermediateFailures=True,
            )
        ]
    )

    record = await run_path(path)

    assert record["status"] == "SUCCESS", record["error"]
    assert record["gwo"]["step_1"]["pollCount"] == 4
    assert len(api.requests_to("/jobs/1")) == 4


async def test_without_ignore_intermediate_failures_a_503_fails_the_step(
    wf: WorkflowDir, api: ScriptedAPI
) -> None:
    api.script("GET", "/jobs/1", Reply(503, text="warming up"), Reply(json={"status": "DONE"}))
    path = wf.workflow([poll_step(api, successCondition="$.status == 'DONE'")])

    record = await run_path(path)

    assert record["error"]["type"] == "HttpStatusError"
    assert "503" in record["error"]["message"]
    assert record["gwo"]["step_1"]["status"] == "failure"
    assert record["gwo"]["step_1"]["responseCode"] == 503
    assert len(api.requests_to("/jobs/1")) == 1


async def test_fail_on_http_error_false_offers_non_2xx_answers_to_the_conditions(
    wf: WorkflowDir, api: ScriptedAPI
) -> None:
    api.script("GET", "/jobs/1", Reply(404, json={"status": "GONE"}))
    path = wf.workflow(
        [poll_step(api, successCondition="$.status == 'GONE'", failOnHttpError=False)]
    )

    record = await run_path(path)

    assert record["status"] == "SUCCESS", record["error"]
    assert record["gwo"]["step_1"]["responseCode"] == 404


async def test_ignore_intermediate_failures_polls_through_a_refused_connection(
    wf: WorkflowDir,
) -> None:
    url = closed_port_url("/jobs/1")
    path = wf.workflow(
        [
            {
                "name": "wait",
                "poll": {
                    "url": url,
                    "interval": "10ms",
                    "maxAttempts": 3,
                    "successCondition": "$.done",
                    "ignoreIntermediateFailures": True,
                },
            }
        ]
    )

    record = await run_path(path)

    assert record["error"]["type"] == "PollingExhausted"  # 3 attempts, none answered
    assert record["gwo"]["step_1"]["pollCount"] == 3


async def test_without_ignore_a_refused_connection_fails_at_once(
    wf: WorkflowDir,
) -> None:
    url = closed_port_url("/jobs/1")
    path = wf.workflow([{"name": "wait", "poll": {"url": url, **FAST, "successCondition": "$.d"}}])

    record = await run_path(path)

    assert record["error"]["type"] == "TransportError"


async def test_input_mappings_fill_the_request_from_steps_output_input_and_step_k(
    wf: WorkflowDir, api: ScriptedAPI
) -> None:
    api.script("GET", "/jobs/j-42", Reply(json={"status": "COMPLETED"}))
    start = wf.py_step("start", '{"lam.exit": False, "data": {"jobId": "j-42"}}')
    path = wf.workflow(
        [
            {"name": "start_job", "handler": start},
            {
                "name": "wait",
                "poll": {
                    "url": api.url + "/jobs/<<mappings.jobId>>",
                    "queryParams": {"tenant": "<<mappings.tenant>>"},
                    "headers": {"X-From-Step": "<<mappings.same>>"},
                    **FAST,
                    "successCondition": "$.status == 'COMPLETED'",
                    "inputMappings": {
                        "jobId": "$.steps_output.start_job.jobId",
                        "tenant": "$.input.tenant",
                        "same": "$.step_1.data.jobId",
                    },
                },
            },
        ]
    )

    record = await run_path(path, {"tenant": "acme"})

    assert record["status"] == "SUCCESS", record["error"]
    (seen,) = api.requests_to("/jobs/j-42")
    assert seen.query == [("tenant", "acme")]
    assert seen.headers["X-From-Step"] == "j-42"


async def test_a_mapping_that_selects_nothing_fails_naming_step_and_mapping(
    wf: WorkflowDir, api: ScriptedAPI
) -> None:
    path = wf.workflow(
        [
            poll_step(
                api,
                path="/jobs/<<mappings.jobId>>",
                successCondition="$.done",
                inputMappings={"jobId": "$.steps_output.start.jobId"},
            )
        ]
    )

    record = await run_path(path)

    assert record["error"]["type"] == "TemplateError"
    assert record["error"]["step"] == "wait"
    assert "inputMappings.jobId" in record["error"]["message"]
    assert "$.steps_output.start.jobId" in record["error"]["message"]
    assert api.seen == []


async def test_output_mappings_write_the_final_response_into_steps_output(
    wf: WorkflowDir, api: ScriptedAPI
) -> None:
    api.script("GET", "/jobs/1", Reply(json={"status": "COMPLETED", "items": [1, 2]}))
    after = wf.py_step("after", 'data["steps_output"]')
    path = wf.workflow(
        [
            poll_step(
                api,
                successCondition="$.status == 'COMPLETED'",
                outputMappings={
                    "$.steps_output.final_job_result": "$.data",
                    "$.steps_output.code": "$.status",
                    "$.steps_output.all": "$.data.items[*]",
                    "$.steps_output.none": "$.data.missing",
                },
            ),
            {"name": "after", "handler": after},
        ]
    )

    record = await run_path(path)

    assert record["status"] == "SUCCESS", record["error"]
    assert record["result"] == {
        "final_job_result": {"status": "COMPLETED", "items": [1, 2]},
        "code": 200,
        "all": [1, 2],
        "none": None,
    }


async def test_input_headers_are_masked(wf: WorkflowDir, api: ScriptedAPI) -> None:
    api.script("GET", "/jobs/1", Reply(json={"done": True}))
    path = wf.workflow(
        [
            poll_step(
                api,
                successCondition="$.done",
                headers={"Authorization": "Bearer <<config.apiToken>>", "Accept": "a/b"},
            )
        ],
        config={"apiToken": "s3cret-token-value"},
    )

    record = await run_path(path)

    assert record["status"] == "SUCCESS", record["error"]
    assert api.seen[0].headers["Authorization"] == "Bearer s3cret-token-value"
    assert "s3cret-token-value" not in json.dumps(record)
    assert record["gwo"]["step_1"]["inputHeaders"]["Accept"] == "a/b"


SEED_000 = """
{
  "stepInstanceId": "wait_for_job_completion",
  "displayName": "Wait for Video Processing Job",
  "stepType": "POLL_EXTERNAL_API",
  "apiCallDefinition": {
    "apiHttpMethod": "GET",
    "apiUrlTemplate": {
      "template": "https://api.media.com/jobs/{{job_id}}",
      "contextMappings": {
        "job_id": { "sourceJsonPath": "$.steps_output.start_job.jobId" }
      }
    }
  },
  "pollingConfig": {
    "intervalSeconds": 10,
    "maxAttempts": 30
  },
  "exitConditions": {
    "successCondition": "$.status == 'COMPLETED'",
    "failureCondition": "$.status == 'FAILED' || $.status == 'CANCELLED'"
  },
  "outputMappings": {
    "$.steps_output.processed_video_details": "$.data"
  },
  "defaultNextStepInstanceId": "notify_user"
}
"""


def seed_step(api: ScriptedAPI) -> dict[str, Any]:
    """Seed 000's example, verbatim but for its URL (the local API) and 10 s made 10 ms."""
    step = json.loads(SEED_000.replace("https://api.media.com", api.url))
    step["pollingConfig"]["intervalSeconds"] = 0.01
    return step


async def test_seed_000_poll_external_api_runs_unchanged(wf: WorkflowDir, api: ScriptedAPI) -> None:
    api.script(
        "GET",
        "/jobs/v-9",
        Reply(json={"status": "PROCESSING"}),
        Reply(json={"status": "COMPLETED", "url": "s3://v-9.mp4"}),
    )
    start = wf.py_step("start", '{"lam.exit": False, "data": {"jobId": "v-9"}}')
    notify = wf.py_step("notify", 'data["steps_output"]["processed_video_details"]')
    path = wf.workflow(
        [
            {"name": "start_job", "handler": start},
            seed_step(api),
            {"name": "notify_user", "handler": notify},
        ]
    )

    record = await run_path(path)

    assert record["status"] == "SUCCESS", record["error"]
    assert len(api.requests_to("/jobs/v-9")) == 2
    assert record["result"] == {"status": "COMPLETED", "url": "s3://v-9.mp4"}
    workflow = load_workflow(path, env={})
    step = workflow.steps[1]
    assert (step.name, step.description, step.route.next) == (
        "wait_for_job_completion",
        "Wait for Video Processing Job",
        "notify_user",
    )
    assert step.poll is not None and step.poll.request.loop is not None
    assert step.poll.request.loop.max_attempts == 30


def test_seed_000_loads_from_yaml_too(tmp_path: Path) -> None:
    doc = json.loads(SEED_000)
    import yaml  # the test only writes YAML; lamrunner reads it

    path = tmp_path / "w.yaml"
    (tmp_path / "notify.py").write_text("def transform(data):\n    return {}\n")
    notify = {"name": "notify_user", "handler": "notify.py"}  # the seed's next step
    path.write_text(yaml.safe_dump({"name": "seed", "steps": [doc, notify]}))
    step, _ = load_workflow(path, env={}).steps
    assert step.poll is not None
    assert step.route.next == "notify_user"
    assert step.poll.request.url == "https://api.media.com/jobs/<<mappings.job_id>>"
    assert step.poll.interval == 10


@pytest.mark.parametrize(
    ("poll", "message"),
    [
        ({"successCondition": "$.status = 'DONE'"}, "column 10: unexpected '='"),
        ({"successCondition": "$.status == DONE"}, "column 13: unknown word 'DONE'"),
        ({"successCondition": "$.a[ == 1"}, "is not a valid JSONPath query"),
        ({"successCondition": "$.items[*].s == 'x'"}, "may select several nodes"),
        ({"successCondition": "($.done"}, "column 8: expected )"),
        ({"successCondition": "$.done", "failureCondition": "$.x &&"}, "failureCondition"),
        ({"successCondition": "(ctx) => ctx.response.", "maxAttempts": 2}, "successCondition"),
        ({"successCondition": "$.done", "maxAttempt": 3}, "did you mean 'maxAttempts'"),
        ({"successCondition": "$.done", "inputMappings": {"a": "status"}}, "inputMappings.a"),
        ({"successCondition": "$.done", "outputMappings": {"$.other": "$.data"}}, "under $.steps"),
        ({"successCondition": "$.done", "interval": "1s", "initialDelay": "1s"}, "interval and"),
        ({"successCondition": "$.done", "ignoreIntermediateFailures": "yes"}, "true or false"),
        ({}, "missing required key 'successCondition'"),
    ],
)
def test_a_bad_poll_step_is_refused_at_load_time_naming_step_and_field(
    wf: WorkflowDir, poll: dict[str, Any], message: str
) -> None:
    path = wf.workflow([{"name": "wait", "poll": {"url": "http://x.test/j", **poll}}])
    with pytest.raises(DefinitionError) as caught:
        load_workflow(path, env={})
    assert message in caught.value.message
    assert "steps[0] (wait).poll" in caught.value.message


def test_a_step_needs_a_handler_or_a_poll_not_both(wf: WorkflowDir) -> None:
    handler = wf.py_step("h", "1")
    poll = {"url": "http://x.test", "successCondition": "$.d"}
    path = wf.workflow([{"handler": handler, "poll": poll}])
    with pytest.raises(DefinitionError, match="both handler and poll"):
        load_workflow(path, env={})


def test_a_step_of_another_type_is_refused(wf: WorkflowDir) -> None:
    path = wf.workflow([{"stepType": "API_CALL", "apiCallDefinition": {"apiUrlTemplate": "x"}}])
    with pytest.raises(DefinitionError, match="'API_CALL' is not a step type"):
        load_workflow(path, env={})


LAMRUNNER = [sys.executable, "-m", "lamrunner"]


async def wait_until(predicate: Any, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


async def cli(*args: str) -> tuple[int, dict[str, Any], str]:
    proc = await asyncio.create_subprocess_exec(
        *LAMRUNNER, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, json.loads(out), err.decode()


async def test_a_killed_poll_step_resumes_where_it_stopped(
    wf: WorkflowDir, api: ScriptedAPI, tmp_path: Path
) -> None:
    """The process is killed mid-poll; `lamrunner resume` goes on with the saved attempt count
    and mappings: no attempt is made twice and the first step is not run again."""
    store = str(tmp_path / "runs.sqlite3")
    api.script("POST", "/start", Reply(json={"jobId": "j7"}))
    api.script(
        "GET",
        "/jobs/j7",
        *[Reply(json={"status": "RUNNING"})] * 3,
        Reply(json={"status": "COMPLETED"}),
    )
    start = wf.request_step("start", {"method": "POST", "url": api.url + "/start"})
    path = wf.workflow(
        [
            {"name": "start", "handler": start},
            {
                "name": "wait",
                "poll": {
                    "url": api.url + "/jobs/<<mappings.jobId>>",
                    "inputMappings": {"jobId": "$.steps_output.start.jobId"},
                    "interval": "300ms",
                    "maxAttempts": 10,
                    "successCondition": "$.status == 'COMPLETED'",
                },
            },
        ]
    )
    run = await asyncio.create_subprocess_exec(
        *LAMRUNNER,
        "run",
        str(path),
        "--store",
        store,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await wait_until(lambda: len(api.requests_to("/jobs/j7")) >= 2)
    run.kill()
    await run.wait()
    [summary] = RunStore(store).list()

    code, record, err = await cli("resume", summary.run_id, "--store", store)

    assert code == 0, err
    assert record["status"] == "SUCCESS"
    assert record["gwo"]["step_2"]["pollCount"] == 4
    assert len(api.requests_to("/jobs/j7")) == 4
    assert len(api.requests_to("/start")) == 1


async def test_validate_accepts_a_poll_step_and_explains_its_schedule(
    wf: WorkflowDir,
) -> None:
    path = wf.workflow(
        [
            {
                "name": "wait",
                "poll": {
                    "url": "http://127.0.0.1:9/jobs/1",
                    "interval": "5s",
                    "maxAttempts": 12,
                    "successCondition": "$.status == 'COMPLETED'",
                },
            }
        ]
    )

    code, document, err = await cli("validate", str(path), "--explain")

    assert code == 0, err
    assert document["valid"] is True
    assert document["steps"] == [{"name": "wait", "handler": "poll", "language": "poll"}]
    (explained,) = document["explain"]
    assert explained["step"] == "wait" and explained["source"] == "poll step"
    assert explained["loopUntil"]["maxAttempts"] == 12


async def test_validate_rejects_a_bad_condition_naming_step_field_and_column(
    wf: WorkflowDir,
) -> None:
    path = wf.workflow(
        [{"name": "wait", "poll": {"url": "http://x.test/j", "successCondition": "$.s =! 'x'"}}]
    )

    code, document, _ = await cli("validate", str(path))

    assert code == 2
    assert document["valid"] is False
    message = document["error"]["message"]
    assert "steps[0] (wait).poll.successCondition: column 5: unexpected" in message
