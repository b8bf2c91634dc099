"""Step 4 of samples/client-poll.yaml: the finished job its poll's action loaded (step_2's
response is the GET of the action's URL; what the poll itself last got is under `poll`)."""


def transform(data):
    job = data["step_2"]["response"]
    return {
        "jobId": job["job_id"],
        "status": job["status"],
        "rows": job["result"]["rows"],
        "location": job["result"]["location"],
        "polls": data["step_2"]["poll"]["http"]["attempts"],
    }
