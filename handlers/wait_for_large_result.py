"""Step 2 of samples/large-result.yaml: poll the job, then follow its result pointer.

The job API (like seed 004's) returns a finished job's result inline while it is small and as
a pointer `{"is_url": true, "url": "/api/jobs/{id}/result"}` from 5 MB up. `followResultUrl`
names where that pointer may be: once the poll succeeds, the runner GETs the URL (with this
request's headers, as it is on the same origin; its timeout and retry; under
limits.maxResponseBytes) and puts the JSON in the pointer's place, so step 3 reads
`step_2.response.result` the same way whatever the result's size. `step_2.http.resultUrl`
says what was fetched: url, status, bytes, attempts, durationMs.
"""


def transform(data):
    return {
        "lam.httpRequest": {
            "method": "GET",
            "url": "<<config.jobApiUrl>>/api/jobs/{{jobId}}",
            "pathParams": {"jobId": data["step_1"]["response"]["job_id"]},
            "headers": {"X-API-Key": "<<config.apiKey>>"},
            "timeout": "30s",  # per HTTP attempt: the result's fetch too
            "retry": {"maxAttempts": 3, "initialDelay": "500ms"},  # and its retries
            "loopUntil": {
                "condition": "(ctx) => ctx.response.status === 'completed'",
                "failWhen": "(ctx) => ['failed','canceled','expired'].includes(ctx.response.status)",
                "maxAttempts": 20,
                "strategy": "exponential",
                "initialDelay": "300ms",
                "maxDelay": "2s",
                "timeout": "60s",
            },
            "followResultUrl": "$.result",
        }
    }
