"""Step 3 of samples/job-lifecycle.yaml: turn the finished job into a report.

An `async def` handler, to show that the runner awaits coroutines; a real one might write the
report somewhere with an async client. It only runs when step 2 succeeded, i.e. the job completed.
"""

from datetime import datetime


async def transform(data):
    submitted = data["step_1"]["response"]
    job = data["step_2"]["response"]
    polling = data["step_2"]["http"]
    result = job.get("result") or {}

    started = datetime.fromisoformat(job["created_at"])
    finished = datetime.fromisoformat(job["updated_at"])
    return {
        "jobId": job["job_id"],
        "dataset": data["input"]["datasetId"],
        "status": job["status"],
        "statusWhenSubmitted": submitted["status"],
        "rows": result.get("rows"),
        "location": result.get("location"),
        "jobSeconds": round((finished - started).total_seconds(), 3),
        "pollAttempts": polling["attempts"],
        "pollMs": polling.get("durationMs"),
    }
