#!/usr/bin/env bash
# Set up the environment (first run only) and run the whole test suite, slow end-to-end tests included.
# For a quick run while developing: .venv/bin/python -m pytest   (skips tests marked slow)
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m pytest -m "slow or not slow" "$@"
