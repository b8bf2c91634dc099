(data) => ({ jobId: "v-" + data.input.video });
