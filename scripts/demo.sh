#!/usr/bin/env bash
# Install (first time only), start the local job API, run a sample workflow end to end.
# Usage: bash scripts/demo.sh [WORKFLOW.yaml INPUT.json]
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec .venv/bin/python samples/demo.py "$@"
