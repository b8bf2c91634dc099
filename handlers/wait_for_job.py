"""Step 2 of samples/job-lifecycle.yaml: poll the job until it finishes.

Two policies work together here:
- `loopUntil` is the polling: GET the job again and again (300ms, 600ms, 1.2s, 2s, 2s...)
  until `condition` holds; `failWhen` stops at once when the job can never complete, so a
  failed job ends the run with PollingFailed instead of burning all 20 attempts; `timeout`
  bounds the whole loop.
- `retry` covers transient trouble within one poll (429 with Retry-After, 5xx, timeouts).
Set `"rateLimit": true` in the input to make the job API answer every other GET with 429.
"""


def transform(data):
    job_id = data["step_1"]["response"]["job_id"]
    query = {"rate_limit": "1"} if data["input"].get("rateLimit") else {}

    return {
        "lam.httpRequest": {
            "method": "GET",
            "url": "<<config.jobApiUrl>>/api/jobs/{{jobId}}",
            "pathParams": {"jobId": job_id},  # fills {{jobId}}, URL-encoded
            "queryParams": query,
            "headers": {"X-API-Key": "<<config.apiKey>>"},
            "timeout": "5s",  # per HTTP attempt
            "retry": {
                "maxAttempts": 4,
                "strategy": "exponential",
                "initialDelay": "500ms",
                "maxDelay": "4s",
                "retryableStatusCodes": [429, 500, 502, 503, 504],
            },
            "loopUntil": {
                "condition": "(ctx) => ctx.response.status === 'completed'",
                "failWhen": (
                    "(ctx) => ['failed','canceled','expired'].includes(ctx.response.status)"
                ),
                "maxAttempts": 20,
                "strategy": "exponential",
                "initialDelay": "300ms",
                "maxDelay": "2s",
                "timeout": "30s",  # the whole loop, all attempts and delays included
            },
        }
    }
