(data) => {
  const orders = data.step_1.response.orders;
  const byStatus = _.mapValues(_.groupBy(orders, "status"), (group) => _.map(group, "id"));
  return {
    byStatus,
    batches: _.map(data.step_2.response, "batch"),
    total: _.sumBy(orders, "amount"),
    owner: _.get(orders, "[0].customer.name", "unknown"),
  };
};
