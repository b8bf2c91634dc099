(data) => ({
  "lam.execute": [
    { "lam.workflowId": 40, "lam.payload": { amount: 12 } },
    { "lam.workflowId": 41, "lam.payload": {} },
  ],
});
