"""Step 1 of samples/job-lifecycle.yaml: submit a job, once.

Returns a `lam.httpRequest` directive rather than doing the request itself: the runner renders
the `<<config.*>>` templates, sends it with aiohttp, applies the retry policy, and records
`{"response": <the job>, "http": {...}}` as step_1 for the next handler.

Input fields: datasetId (required), operation, outputFormat, and simulate
("failed", "canceled" or "expired") to make the job API end the job that way, and
unavailableSeconds to make the job's status answer 503 for its first seconds, and resultRows
(how many rows of data the finished job's result carries).
"""

import uuid


def transform(data):
    spec = data["input"]
    body = {
        "datasetId": spec["datasetId"],
        "operation": spec.get("operation", "transform"),
        "outputFormat": spec.get("outputFormat", "parquet"),
    }
    if spec.get("simulate"):
        body["simulate"] = spec["simulate"]
    if spec.get("unavailableSeconds"):  # the job's status answers 503 that long (warm-up)
        body["unavailableSeconds"] = spec["unavailableSeconds"]
    if "resultRows" in spec:  # the job API's large results (samples/large-result.yaml)
        body["resultRows"] = spec["resultRows"]

    return {
        "lam.httpRequest": {
            "method": "POST",
            "url": "<<config.jobApiUrl>>/api/jobs",
            "headers": {
                "X-API-Key": "<<config.apiKey>>",
                # A fresh key per run: every run gets its own job, and if the runner has to
                # retry this POST (timeout, 503...) the API returns that same job, not a twin.
                "Idempotency-Key": str(uuid.uuid4()),
            },
            "body": body,
            # Transient failures only (429/5xx, timeouts, refused connections): try 3 times.
            "retry": {"maxAttempts": 3, "strategy": "exponential", "initialDelay": "250ms"},
        }
    }
