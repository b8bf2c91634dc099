(data) => ({ label: data.step_1.response.label })
