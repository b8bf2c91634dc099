(data) => data.step_1.response.last
  ? { "lam.exit": true, data: { rounds: data.step_1.response.round } }
  : { round: data.step_1.response.round };
