#!/usr/bin/env bash
# Install everything the tests need into .venv, then run lint, type checks and the test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[export,dev]'
./scripts/install-test-tools.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy modalfuse tests benchmarks
.venv/bin/python -m pytest "$@"
