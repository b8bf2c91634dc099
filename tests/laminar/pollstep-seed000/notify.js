(data) => ({ details: data.steps_output.processed_video_details, polls: data.step_2.pollCount });
