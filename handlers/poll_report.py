"""The last step of samples/poll-external-api.yaml and samples/poll-warmup.yaml: what the
declarative poll step before it left in the GWO.

A poll step has no handler; its GWO entry carries its outputs (status, pollCount,
responseCode, processedUrl, interval, ...) beside `response`, and its outputMappings wrote
into `steps_output`.
"""


def transform(data):
    poll = next(
        entry for key, entry in data.items() if key.startswith("step_") and "pollCount" in entry
    )
    return {
        "status": poll["status"],
        "pollCount": poll["pollCount"],
        "responseCode": poll["responseCode"],
        "processedUrl": poll["processedUrl"],
        "interval": poll["interval"],
        "job": poll["response"]["status"],
        "stepsOutput": data.get("steps_output", {}),
    }
