(data) => [{ "lam.workflowId": 5, "lam.payload": {} }]
