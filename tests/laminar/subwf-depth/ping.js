(data) => ({ "lam.httpRequest": { method: "GET", url: "{{config.api}}/level", queryParams: { n: data.input.n || 0 } } });
