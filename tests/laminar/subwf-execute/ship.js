(data) => ({
  "lam.httpRequest": {
    method: "POST",
    url: "{{config.api}}/shipments",
    headers: { Authorization: "Bearer {{config.token}}" },
    body: { order: data.input.orderId, to: data.input.address },
  },
});
