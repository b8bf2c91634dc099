(data) => {
  if (!data.input.items.length) {
    return { "lam.exit": true, data: { skipped: true } };
  }
  return data.input.items;
}
