(data) => ({ jobId: data.step_1.response.id, rows: data.step_1.response.rows })
