(data) => ({
  "lam.httpRequest": { method: "GET", url: "<<config.api>>/page", queryParams: { round: String(((data.step_2 && data.step_2.data.round) || 0) + 1) } },
});
