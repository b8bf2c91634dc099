// Step 1 of samples/process-dataset.yaml: start a data-processing job and wait for it.
//
// This is Laminar's own polling example, nearly verbatim: it POSTs the job and, because
// `loopUntil` is set, the runner re-sends the same POST until the condition holds. That works
// because the job API is idempotent (the same dataset, operation and format return the same
// job with its current status). Only the delays are shorter, so the demo ends in seconds.
//
// `data` is the Global Workflow Object: {input: <the workflow input>}. The `{{config.*}}`
// templates are filled in by the runner from the workflow's `config:` block before sending.
(data) => {
  const { input } = data;

  return {
    "lam.httpRequest": {
      method: "POST",
      url: "{{config.dataProcessorUrl}}/api/jobs",
      headers: {
        Authorization: "Bearer {{config.processorApiKey}}",
        "Content-Type": "application/json",
      },
      body: {
        datasetId: input.datasetId,
        operation: "transform",
        outputFormat: "parquet",
      },
      // Poll until job completes
      loopUntil: {
        condition: "(ctx) => ctx.response.status === 'completed'",
        maxAttempts: 20,
        strategy: "exponential",
        initialDelay: "500ms", // Laminar's example uses "2s"
        maxDelay: "4s", // and "60s"
      },
    },
  };
};
