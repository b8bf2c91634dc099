(data) => ({
  "lam.execute": data.input.orders.map((order) => ({
    "lam.workflowId": 39,
    "lam.payload": { orderId: order.id, address: order.address },
  })),
});
