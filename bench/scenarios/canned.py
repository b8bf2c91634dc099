"""The throughput workflow with the network taken out, for counting lamrunner's own work:

    python -m bench.scenarios.canned {bare|lam} WORKFLOW ATTEMPTS

`lam` runs the workflow (50 loops) through one `Engine` whose transport answers every request
at once (one `asyncio.sleep(0)`, so each attempt still yields to the loop, as a real one does);
`bare` is the floor's equivalent: 50 loops of the same send and `json.loads`. The difference
per attempt, counted by `python -m bench.instructions --canned`, is what lamrunner's poll loop
costs beyond sending.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import load_workflow
from lamrunner.http.transport import Response
from lamrunner.runner.engine import Engine

BODY = '{"status":"running","id":"j1"}'
HEADERS = {"content-type": "application/json", "content-length": str(len(BODY))}
LOOPS = 50


class Canned:
    async def send(self, request: Any, timeout: float) -> Response:
        await asyncio.sleep(0)
        return Response(200, dict(HEADERS), BODY, True, 0.0)


async def bare(attempts: int) -> None:
    transport = Canned()

    async def loop() -> None:
        for attempt in range(1, attempts + 1):
            json.loads((await transport.send(None, 30.0)).text)
            if attempt >= attempts:
                break

    await asyncio.gather(*(loop() for _ in range(LOOPS)))


async def lam(workflow_path: str, attempts: int) -> None:
    workflow = load_workflow(workflow_path, env={})
    config = build_config(workflow.config, (), (), {})
    engine = Engine(workflow, config, transport=Canned())
    record = await engine.run({"loops": LOOPS, "attempts": attempts})
    if record["status"] != "SUCCESS":
        raise SystemExit(f"run failed: {record['error']}")


def main() -> None:
    name, workflow, attempts = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(bare(attempts) if name == "bare" else lam(workflow, attempts))


if __name__ == "__main__":
    main()
