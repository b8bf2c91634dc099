// An API key in a header (X-API-Key unless `name` says otherwise) and one in the query string.
(data) => ({
  "lam.httpRequests": [
    {
      method: "GET",
      url: "{{config.api}}/inventory/{sku}",
      pathParams: { sku: data.input.sku },
      authentication: { type: "apikey", apiKey: "{{config.inventoryKey}}" },
    },
    {
      method: "GET",
      url: "{{config.api}}/pricing",
      queryParams: { sku: data.input.sku },
      authentication: { type: "apikey", apiKey: "{{config.pricingKey}}", in: "query", name: "key" },
    },
  ],
})
