// A search API paged by a field of the POST body.
(data) => ({
  "lam.httpRequest": {
    method: "POST",
    url: "{{config.api}}/search",
    body: { query: data.input.q, size: 2, offset: 0 },
    pagination: {
      next: { body: { offset: "(ctx) => ctx.response.offset + ctx.response.hits.length" } },
      stopCondition: "(ctx) => ctx.response.offset + ctx.response.hits.length >= ctx.response.total",
    },
  },
})
