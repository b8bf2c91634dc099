// Page numbers: ctx.page is the number of the page just fetched (the first is 1).
(data) => ({
  "lam.httpRequest": {
    method: "GET",
    url: "{{config.api}}/products",
    queryParams: { page: 1, per_page: 2 },
    pagination: {
      next: { queryParams: { page: "ctx.page + 1" } },
      stopCondition: "ctx.response.length < 2",
    },
  },
})
