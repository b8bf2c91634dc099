(data) => ({
  "lam.httpRequest": {
    method: "GET",
    url: "{{config.api}}/jobs/{jobId}",
    pathParams: { jobId: data.input.jobId },
    loopUntil: {
      condition: "(ctx) => ctx.response.status === 'done'",
      maxAttempts: 3,
      strategy: "fixed",
      initialDelay: "10ms",
    },
  },
})
