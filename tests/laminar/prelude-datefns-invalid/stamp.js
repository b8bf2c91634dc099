(data) => ({ day: format(parseISO(data.input.when), "yyyy-MM-dd") });
