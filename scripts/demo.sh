#!/usr/bin/env bash
# Install modalfuse into .venv and run the main job on the embedded default.
# Extra arguments go to `modalfuse demo` (e.g. scripts/demo.sh --json).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
exec .venv/bin/modalfuse demo "$@"
