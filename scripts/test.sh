#!/usr/bin/env bash
# Install (first time only) and run the whole test suite with pytest.
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec .venv/bin/python -m pytest "$@"
