(data) => data.step_1.response.events.map((e) => {
  const at = parseISO(e.at);
  if (isNaN(at.getTime())) return { id: e.id, at: null };
  return {
    id: e.id,
    at: format(at, "EEEE, MMMM do yyyy 'at' h:mm a"),
    short: format(at, "dd/MM HH:mm"),
    quarter: format(at, "QQQ yyyy"),
  };
});
