"""Step 2 of samples/batch.yaml: pair each dataset id with its finished job.

`data["step_1"]["response"]` and `data["step_1"]["http"]` are lists in the order of the
requests, which is the order of `input.datasetIds`, so a zip lines them up.
"""


def transform(data):
    ids = data["input"]["datasetIds"]
    jobs = data["step_1"]["response"]
    http = data["step_1"]["http"]

    items = []
    for dataset_id, job, meta in zip(ids, jobs, http, strict=True):
        result = job.get("result") or {}
        items.append(
            {
                "datasetId": dataset_id,
                "jobId": job["job_id"],
                "status": job["status"],
                "rows": result.get("rows"),
                "location": result.get("location"),
                "attempts": meta["attempts"],
            }
        )
    return {
        "jobs": items,
        "completed": sum(item["status"] == "completed" for item in items),
        "totalRows": sum(item["rows"] or 0 for item in items),
    }
