(data) => ({
  "lam.asyncExecute": [
    { "lam.workflowId": 7, "lam.payload": { who: "ana" } },
    { "lam.workflowId": 7, "lam.payload": { who: "bo" } },
  ],
});
