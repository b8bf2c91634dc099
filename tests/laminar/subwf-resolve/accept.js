(data) => ({
  "lam.resolveThenExecute": {
    "lam.workflowId": 60,
    "lam.payload": { file: data.input.file },
    "lam.result": { accepted: true, file: data.input.file },
  },
});
