(data) => ({
  "lam.httpRequest": { method: "GET", url: "{{config.api}}/orders" },
});
