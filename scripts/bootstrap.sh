# Sourced by the other scripts: make sure .venv exists and has lamrunner (with test extras)
# installed in editable mode. Re-running is cheap: pip is skipped when nothing changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.lamrunner-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,fast,bench]' >&2
  touch "$stamp"
fi

# tests/test_datefns.py checks lamrunner's date-fns against the real date-fns 2.30.0 in Node:
# node and npm (from the distribution, when missing and we may install), and date-fns in the
# ignored .cache/npm (a few seconds, once).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing node and npm (apt-get)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
  else
    echo "bootstrap: node and npm are missing (tests/test_datefns.py needs them)" >&2
  fi
fi
# tests/test_runs_page.py drives the `lamrunner serve` runs page in a real headless browser:
# Debian's chromium and its matching chromedriver (selenium, from the test extra, drives them).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing chromium and chromium-driver (apt-get)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
  else
    echo "bootstrap: chromium or chromedriver is missing (tests/test_runs_page.py needs them)" >&2
  fi
fi
if command -v npm >/dev/null && [ ! -f .cache/npm/node_modules/date-fns/package.json ]; then
  mkdir -p .cache/npm
  npm install --prefix .cache/npm --no-save --no-audit --no-fund --loglevel=error \
    --cache "$ROOT/.cache/npm/_cache" date-fns@2.30.0 >&2
fi
