(data) => ({ ran: true });
