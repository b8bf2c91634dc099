(data) => ({
  "lam.httpRequest": {
    method: "GET",
    url: "<<config.api>>/status?id=12345",
    actionFrom: "$.action",
    loopUntil: { initialDelay: "20ms", maxAttempts: 100 },
  },
});
