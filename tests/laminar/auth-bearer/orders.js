(data) => ({
  "lam.httpRequest": {
    method: "GET",
    url: "{{config.api}}/orders",
    queryParams: { status: "open" },
    authentication: { type: "bearer", token: "{{config.apiToken}}" },
  },
})
