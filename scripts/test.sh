#!/usr/bin/env bash
# Install everything the tests need into .venv, start the services they use (RabbitMQ, Redis and
# a local OpenSearch node and a local three-node cluster), then run lint, type checks and the
# test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not slow").
# OPENSEARCH_URL already set: that cluster is used and no local node is started.
# MODALFUSE_SKIP_SERVICES=1: start nothing; the tests that need a service skip and say why.
# Under CI (CI=true) a service that cannot start fails the run, and no service test may skip.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[export,dev]'
./scripts/install-test-tools.sh
if [ "${CI:-}" = "true" ]; then
    export MODALFUSE_REQUIRE_SERVICES=1
fi
if [ "${MODALFUSE_SKIP_SERVICES:-0}" != "1" ]; then
    started=0
    lines="$(./scripts/services.sh start)" && started=1
    if [ "$started" = 0 ] && [ "${MODALFUSE_REQUIRE_SERVICES:-0}" = "1" ]; then
        echo "test.sh: a service the tests need did not start (see above)" >&2
        exit 1
    fi
    while IFS= read -r line; do
        case "$line" in
            OPENSEARCH_URL=*) [ -n "${OPENSEARCH_URL:-}" ] || export "${line}" ;;
            OPENSEARCH_CLUSTER_URL=*) [ -n "${OPENSEARCH_CLUSTER_URL:-}" ] || export "${line}" ;;
        esac
    done <<<"$lines"
fi
echo "test.sh: OPENSEARCH_URL=${OPENSEARCH_URL:-<none: OpenSearch tests skip>}" >&2
echo "test.sh: OPENSEARCH_CLUSTER_URL=${OPENSEARCH_CLUSTER_URL:-<none: cluster tests skip>}" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy src tests
.venv/bin/python -m pytest "$@"
