"""Step 2 of samples/process-dataset.yaml: boil the finished job down to a summary.

`data["step_1"]` is what the runner recorded for the polling request of step 1:
    {"response": <the last response body, the completed job>,
     "http": {"status": 200, "headers": {...}, "attempts": 4, "durationMs": 2710}}
A plain return value (no "lam.*" key) becomes this step's data and, as the last step,
the workflow's result.
"""


def transform(data):
    job = data["step_1"]["response"]
    http = data["step_1"]["http"]
    result = job.get("result") or {}
    return {
        "jobId": job["job_id"],
        "datasetId": data["input"]["datasetId"],
        "status": job["status"],
        "rows": result.get("rows"),
        "location": result.get("location"),
        "attempts": http["attempts"],
        "durationMs": http.get("durationMs"),
    }
