(data) => ({ "lam.httpRequest": { method: "POST", url: "{{config.api}}/x", body: data.input } });
