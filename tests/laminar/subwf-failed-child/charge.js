(data) => ({ "lam.httpRequest": { method: "POST", url: "{{config.api}}/charges", body: data.input } });
