"""HTTP: the only place that imports aiohttp.

`request` is the exact request to send, `transport` sends it (one session per run, body cap,
the one boundary where aiohttp errors become `TransportError`), `netpolicy` refuses addresses.
"""
