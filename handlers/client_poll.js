// Step 2 of samples/client-poll.yaml: a client poll (seed 001). GET the job's client-poll URL
// every 500 ms; the job API answers {status, progress} while the job runs, then an action:
// {"url": "/api/jobs/<id>"} (the runner GETs the finished job: the step's response) or
// {"exit": true, "result": {...}} (the run ends SUCCESS with that result). No condition: the
// poll runs until an action arrives, or maxAttempts (then the step's onError runs).
(data) => ({
  "lam.httpRequest": {
    method: "GET",
    url: "<<config.jobApiUrl>>/api/jobs/{id}/client-poll",
    pathParams: { id: data.step_1.response.job_id },
    headers: { "X-API-Key": "<<config.apiKey>>" },
    actionFrom: "$.action",
    loopUntil: { initialDelay: "500ms", maxAttempts: 40 },
  },
});
