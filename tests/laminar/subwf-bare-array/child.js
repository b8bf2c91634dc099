(data) => ({ ok: true })
