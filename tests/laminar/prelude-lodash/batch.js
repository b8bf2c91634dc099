(data) => {
  const orders = _.get(data, "step_1.response.orders", []);
  const open = _.sortBy(_.filter(orders, { status: "open" }), ["priority", "id"]);
  return {
    "lam.httpRequests": _.chunk(_.map(open, "id"), 2).map((ids) => ({
      method: "POST",
      url: "{{config.api}}/batches",
      body: { ids },
    })),
  };
};
