"""Step 3 of samples/large-result.yaml: a summary of the (large) result, not the result itself.

Step 2's response holds every row (megabytes); the run record's `result` is this step's
output, so it stays a few lines on stdout. The full result is still in the GWO (`step_2`),
and so in the run store.
"""


def transform(data):
    job = data["step_2"]["response"]
    result = job["result"]
    rows = result["data"]
    fetched = data["step_2"]["http"].get("resultUrl")  # absent when the result was inline
    return {
        "jobId": job["job_id"],
        "status": job["status"],
        "rows": len(rows),
        "firstRow": rows[0] if rows else None,
        "lastRow": rows[-1] if rows else None,
        "valueSum": sum(row["value"] for row in rows),
        "followedPointer": fetched is not None,
        "resultBytes": fetched["bytes"] if fetched else None,
        "fetchMs": fetched["durationMs"] if fetched else None,
    }
