"""The SQLite run store: the only place that imports sqlite3.

Hosts (the CLI, later a server) persist runs through it; the run core only sees a checkpoint
hook.
"""
