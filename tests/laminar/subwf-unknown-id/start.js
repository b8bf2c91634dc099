(data) => ({ "lam.execute": [{ "lam.workflowId": 93, "lam.payload": {} }] });
