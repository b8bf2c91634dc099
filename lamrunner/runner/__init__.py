"""The async core of one run: steps in order, handlers called, requests sent and polled.

It knows the definition, the decisions, HTTP and JS below it, and nothing of any host: the CLI,
a server or a cloud function plug in through the checkpoint and observer hooks.
"""
