(data) => ({
  "lam.httpRequest": {
    method: "GET",
    url: "{{config.api}}/report",
    authentication: {
      type: "oauth2",
      tokenUrl: "{{config.api}}/oauth/token",
      clientId: "{{config.clientId}}",
      clientSecret: "{{config.clientSecret}}",
      clientAuth: "basic",
    },
  },
})
