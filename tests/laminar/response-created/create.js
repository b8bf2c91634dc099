(data) => ({
  "lam.httpRequest": {
    method: "POST",
    url: "{{config.api}}/dispatch-notes",
    body: { email: data.input.email, validated: data.step_1.data.validated },
  },
})
