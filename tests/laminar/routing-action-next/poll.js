(data) => ({
  "lam.httpRequest": {
    method: "GET",
    url: "<<config.api>>/status/{id}",
    pathParams: { id: data.input.id },
    headers: { Authorization: "Bearer <<config.token>>" },
    actionFrom: "$.action",
    loopUntil: { initialDelay: "20ms", maxAttempts: 10 },
  },
});
