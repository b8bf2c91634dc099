(data) => ({ "lam.httpRequest": { method: "POST", url: "{{config.api}}/ship" } });
