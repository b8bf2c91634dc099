(data) => ({
  "lam.httpRequests": data.input.ids.map((id) => ({
    method: "GET",
    url: "{{config.api}}/users/{userId}/orders",
    pathParams: { userId: id },
    queryParams: { status: "open", limit: 2 },
  })),
})
