// Laminar's batching example: every request carries the same pathParams, one of which
// (`region`) this url does not use. Laminar ignores it; lamrunner warns and sends.
(data) => ({
  "lam.httpRequests": data.input.userIds.map((userId) => ({
    method: "GET",
    url: "{{config.api}}/users/{userId}",
    pathParams: { userId: userId, region: "eu" },
  })),
})
