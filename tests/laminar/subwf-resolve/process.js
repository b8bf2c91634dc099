(data) => ({ "lam.httpRequest": { method: "POST", url: "{{config.api}}/process", body: data.input } });
