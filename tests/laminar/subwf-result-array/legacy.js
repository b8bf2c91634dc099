// Laminar's deprecated form: lam.result holding a list of workflow calls.
(data) => ({ "lam.result": [{ "lam.workflowId": 5, "lam.payload": { x: 1 } }, { "lam.workflowId": 5, "lam.payload": { x: 2 } }] });
