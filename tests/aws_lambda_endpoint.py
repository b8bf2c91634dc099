"""The smallest honest Lambda Invoke endpoint for `dex-local-runner start-server --lambda-endpoint`.

    python tests/aws_lambda_endpoint.py --port 0      # prints "listening on http://127.0.0.1:N"

dex-local-runner is the durable service's control plane only: to run a handler it sends Lambda's
`Invoke` (`POST /2015-03-31/functions/{name}/invocations`, marked with `X-Dex-Handler-Invoke:
true`) whose payload is a durable invocation input, and reads the handler's output back as
the response body. This process is that function's container: every marked Invoke calls
`lamrunner.aws.durable_handler(payload, context)` exactly once, in this process (so a second
invocation is a warm one, as on Lambda; the module is imported before it listens, as Lambda's
init phase imports it before the first invocation), one at a time, and answers as Lambda does:

    200, body = the handler's return value as JSON
    200 + `X-Amz-Function-Error: Unhandled`, body = {errorMessage, errorType, stackTrace}
        when the handler raises (what Lambda reports for an uncaught exception)

The handler's SDK checkpoints through boto3's lambda client: the environment points it at the
dex server (`AWS_ENDPOINT_URL_LAMBDA`), as Lambda's own environment points it at the service.
An unmarked Invoke (a caller starting an execution) is refused: that is the control plane's
job, and this endpoint stands in for the function only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

PREFIX = "/2015-03-31/functions/"
SUFFIX = "/invocations"
MARKER = "x-dex-handler-invoke"


class Context:
    """What the Lambda runtime hands a handler as its `context` (the attributes it defines)."""

    def __init__(self, function_name: str, timeout_seconds: float, region: str) -> None:
        name, _, qualifier = function_name.partition(":")
        if name.startswith("arn:"):  # invoked by ARN: arn:aws:lambda:r:acct:function:name[:q]
            parts = function_name.split(":")
            name, qualifier = parts[6], (parts[7] if len(parts) > 7 else "")
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = name
        self.function_version = qualifier if qualifier.isdigit() else "$LATEST"
        self.invoked_function_arn = (
            function_name
            if function_name.startswith("arn:")
            else f"arn:aws:lambda:{region}:123456789012:function:{function_name}"
        )
        self.memory_limit_in_mb = "512"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self.tenant_id: str | None = None
        self.client_context: Any = None
        self.identity: Any = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def log(self, msg: str) -> None:
        sys.stderr.write(msg)


class Invocations(BaseHTTPRequestHandler):
    handler: Callable[[Any, Any], Any]
    timeout_seconds = 900.0
    region = "us-west-2"

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
            self._reply(404, {"Type": "User", "message": f"no route {path}"}, "ResourceNotFound")
            return
        function_name = unquote(path[len(PREFIX) : -len(SUFFIX)])
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get(MARKER, "").lower() != "true":
            message = "this endpoint runs handler invocations (X-Dex-Handler-Invoke) only"
            self._reply(400, {"Type": "User", "message": message}, "InvalidRequestContent")
            return
        try:
            event = json.loads(body) if body else None
        except ValueError as exc:
            self._reply(400, {"Type": "User", "message": str(exc)}, "InvalidRequestContent")
            return
        context = Context(function_name, self.timeout_seconds, self.region)
        context.tenant_id = self.headers.get("X-Amz-Tenant-Id")
        try:
            output = self.handler(event, context)
        except Exception as exc:  # noqa: BLE001 - reported the way Lambda reports it
            error = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_exception(exc),
            }
            self._reply(200, error, function_error="Unhandled", request_id=context.aws_request_id)
            return
        self._reply(200, output, request_id=context.aws_request_id)

    def _reply(
        self,
        status: int,
        payload: Any,
        error_type: str | None = None,
        *,
        function_error: str | None = None,
        request_id: str | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Amzn-RequestId", request_id or str(uuid.uuid4()))
        self.send_header("X-Amz-Executed-Version", "$LATEST")
        if error_type is not None:
            self.send_header("X-Amzn-ErrorType", f"{error_type}Exception")
        if function_error is not None:
            self.send_header("X-Amz-Function-Error", function_error)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        sys.stderr.write(f"lambda-endpoint: {format % args}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--timeout", type=float, default=900.0, help="the function's Timeout")
    args = parser.parse_args()
    Invocations.timeout_seconds = args.timeout
    Invocations.region = os.environ.get("AWS_DEFAULT_REGION", "us-west-2")
    from lamrunner.aws import durable_handler  # Lambda's init phase: before the first Invoke

    Invocations.handler = staticmethod(durable_handler)
    # One invocation at a time, as one Lambda container runs them.
    server = HTTPServer(("127.0.0.1", args.port), Invocations)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
