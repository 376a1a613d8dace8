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
            OPENSEARCH_3_URL=*) [ -n "${OPENSEARCH_3_URL:-}" ] || export "${line}" ;;
        esac
    done <<<"$lines"
fi
echo "test.sh: OPENSEARCH_URL=${OPENSEARCH_URL:-<none: OpenSearch tests skip>}" >&2
echo "test.sh: OPENSEARCH_CLUSTER_URL=${OPENSEARCH_CLUSTER_URL:-<none: cluster tests skip>}" >&2
echo "test.sh: OPENSEARCH_3_URL=${OPENSEARCH_3_URL:-<none: no 3.x pass>}" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy src tests
.venv/bin/python -m pytest "$@"
# The OpenSearch tests again on the 3.x node (its own disposable nodes too, of that version);
# the cluster's are 2.19.1's, and the server-side fusion tests are deselected by capability.
if [ -n "${OPENSEARCH_3_URL:-}" ] && [ "${MODALFUSE_SKIP_3X:-0}" != "1" ]; then
    echo "test.sh: the OpenSearch tests on $OPENSEARCH_3_URL (3.x)" >&2
    OPENSEARCH_URL="$OPENSEARCH_3_URL" MODALFUSE_OPENSEARCH_VERSION=3.3.0 \
        .venv/bin/python -m pytest tests/conformance tests/integration -m "opensearch and not cluster"
fi
