// Cursor pagination: each page names the cursor of the next; the last one has none.
(data) => ({
  "lam.httpRequest": {
    method: "GET",
    url: "{{config.api}}/contacts",
    queryParams: { limit: 2 },
    pagination: {
      next: { queryParams: { cursor: "(ctx) => ctx.response.next_cursor" } },
      stopCondition: "(ctx) => !ctx.response.has_more",
    },
  },
})
