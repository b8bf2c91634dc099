(data) => ({ finished: data.step_1.response.action.next, polls: data.step_1.http.attempts });
