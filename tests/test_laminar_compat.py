"""Laminar's own polling example (docs, verbatim: 2 s initial delay, 60 s cap) runs unchanged.

The job API and the engine share one fake clock, so the exponential schedule plays out in full
(jobs advance as the engine "sleeps") without the test waiting for it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from aiohttp import web

from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import load_workflow
from lamrunner.runner.clock import FakeClock
from lamrunner.runner.engine import Engine

LAMINAR_EXAMPLE = """\
(data) => {
  const { input } = data;

  return {
    "lam.httpRequest": {
      method: "POST",
      url: "{{config.dataProcessorUrl}}/api/jobs",
      headers: {
        Authorization: "Bearer {{config.processorApiKey}}",
        "Content-Type": "application/json",
      },
      body: {
        datasetId: input.datasetId,
        operation: "transform",
        outputFormat: "parquet",
      },
      // Poll until job completes
      loopUntil: {
        condition: "(ctx) => ctx.response.status === 'completed'",
        maxAttempts: 20,
        strategy: "exponential",
        initialDelay: "2s",
        maxDelay: "60s",
      },
    },
  };
};
"""


def _jobapi():
    path = Path(__file__).parent.parent / "samples" / "jobapi.py"
    spec = importlib.util.spec_from_file_location("sample_jobapi", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


async def test_laminar_docs_polling_example_runs_unchanged(tmp_path):
    clock = FakeClock()
    app = _jobapi().create_app(api_key="k-laminar", phase_seconds=5.0, clock=clock.now)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        (tmp_path / "start.js").write_text(LAMINAR_EXAMPLE)
        (tmp_path / "flow.yaml").write_text(
            "name: laminar-example\n"
            "config:\n"
            f"  dataProcessorUrl: http://127.0.0.1:{port}\n"
            "  processorApiKey: k-laminar\n"
            "steps:\n  - handler: start.js\n"
        )
        workflow = load_workflow(tmp_path / "flow.yaml", env={})
        record = await Engine(workflow, build_config(workflow.config), clock=clock).run(
            {"datasetId": "ds-1"}
        )
    finally:
        await runner.cleanup()
    assert record["status"] == "SUCCESS", record["error"]
    assert record["result"]["status"] == "completed"
    # pending 5 s, processing 5 s: polls at 0, 2, 6 (processing), 14 s (completed)
    assert clock.sleeps == [2, 4, 8]
    assert record["gwo"]["step_1"]["http"]["attempts"] == 4
