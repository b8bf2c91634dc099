(data) => {
  const since = parseISO(data.input.since);
  return {
    "lam.httpRequest": {
      method: "GET",
      url: "{{config.api}}/events",
      queryParams: {
        day: format(since, "yyyy-MM-dd"),
        from: format(since, "yyyy-MM-dd'T'HH:mm:ssXXX"),
        stamp: format(since, "t"),
      },
    },
  };
};
