"""The `lamrunner` command: everything that belongs to a process.

argparse, signals, the run store wiring, the live terminal line, the event loop choice and the
GC policy. `main` is the entry point; importing this package stays cheap for `--version`.
"""
