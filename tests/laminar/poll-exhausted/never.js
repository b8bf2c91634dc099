(data) => ({ unreachable: true })
