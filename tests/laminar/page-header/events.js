// The next page's token comes in a response header and goes back in a request header; the
// pages stop when the server sends none (every next value null: nothing left to ask for).
(data) => ({
  "lam.httpRequest": {
    method: "GET",
    url: "{{config.api}}/events",
    authentication: { type: "bearer", token: "{{config.apiToken}}" },
    pagination: {
      next: { headers: { "X-Page-Token": "(ctx) => ctx.headers['x-next-page-token']" } },
    },
  },
})
