(data) => ({
  "lam.httpRequest": {
    method: "GET",
    url: "{{config.api}}/me",
    authentication: {
      type: "basic",
      username: "{{config.username}}",
      password: "{{config.password}}",
    },
  },
})
