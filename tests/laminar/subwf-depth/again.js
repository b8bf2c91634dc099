(data) => ({ "lam.execute": [{ "lam.workflowId": 1, "lam.payload": { n: (data.input.n || 0) + 1 } }] });
