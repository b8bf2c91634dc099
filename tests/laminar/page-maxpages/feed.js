// A feed that never ends: maxPages bounds it.
(data) => ({
  "lam.httpRequest": {
    method: "GET",
    url: "{{config.api}}/feed",
    pagination: {
      next: { queryParams: { after: "(ctx) => ctx.response.last_id" } },
      stopCondition: "(ctx) => ctx.response.items.length === 0",
      maxPages: 2,
    },
  },
})
