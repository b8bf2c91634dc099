(data) => ({ skipped: false });
