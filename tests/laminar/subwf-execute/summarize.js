(data) => ({
  shipped: data.step_1.executions.map((e) => ({ workflowId: e.workflowId, status: e.status, label: e.result.label })),
});
