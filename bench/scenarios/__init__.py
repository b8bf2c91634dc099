"""The scenarios: one module each, `run(bench) -> list[Row]` (see bench/__main__.py for the order)."""
