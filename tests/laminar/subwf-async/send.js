(data) => ({
  "lam.httpRequest": { method: "POST", url: "{{config.api}}/notify", body: { who: data.input.who } },
});
