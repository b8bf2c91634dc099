(data) => ({ started: data.step_1.executions.map((e) => e.status) })
