(data) => ({
  "lam.httpRequest": {
    method: "GET",
    url: "{{config.api}}/reports",
    headers: { "X-API-Key": "{{config.validApiKey}}" },
  },
});
