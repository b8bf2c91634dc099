// Step 1 of samples/batch.yaml: start one job per dataset and wait for all of them.
//
// `lam.httpRequests` (plural) takes a list of request objects. The runner performs them
// concurrently (at most `limits.concurrency` at once) and each one polls on its own
// `loopUntil`; step_1 then holds {response: [job0, job1, ...], http: [{...}, ...]} in the
// same order as this list, whichever finished first.
(data) => {
  const ids = data.input.datasetIds;
  if (!Array.isArray(ids) || ids.length === 0) {
    throw new Error("input.datasetIds must be a non-empty list of dataset ids");
  }

  return {
    "lam.httpRequests": ids.map((datasetId) => ({
      method: "POST",
      url: "<<config.jobApiUrl>>/api/jobs",
      headers: { Authorization: "Bearer <<config.apiKey>>" },
      body: { datasetId, operation: "transform", outputFormat: "parquet" },
      // Same pattern as start_job.js: re-send the idempotent POST until the job completes,
      // but give up at once if it ends any other way.
      loopUntil: {
        condition: "(ctx) => ctx.response.status === 'completed'",
        failWhen: "(ctx) => ['failed', 'canceled', 'expired'].includes(ctx.response.status)",
        maxAttempts: 20,
        strategy: "exponential",
        initialDelay: "500ms",
        maxDelay: "4s",
      },
    })),
  };
};
