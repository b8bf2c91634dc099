(data) => ({
  "lam.httpRequests": data.step_1.response.map((c) => ({
    method: "GET",
    url: "{{config.api}}/customers/{id}/invoices",
    pathParams: { id: c.id },
    authentication: {
      type: "oauth2",
      tokenUrl: "{{config.api}}/oauth/token",
      clientId: "{{config.clientId}}",
      clientSecret: "{{config.clientSecret}}",
      scope: "billing.read",
    },
  })),
})
