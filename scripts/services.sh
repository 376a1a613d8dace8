#!/usr/bin/env bash
# The services the test suite uses: RabbitMQ and Redis (Debian's packages) and a local OpenSearch
# node (scripts/opensearch-node.sh, from Maven Central).
#
#   scripts/services.sh start   install what is missing, start everything; the last three lines
#                               are OPENSEARCH_3_URL=... (a 3.3.0 node), OPENSEARCH_CLUSTER_URL=...
#                               (the three-node cluster) and OPENSEARCH_URL=... (the 2.19.1 node),
#                               ready to `export`
#   scripts/services.sh stop
#
# Installing needs root (or passwordless sudo) and apt-get. Where that is not possible, the
# missing services are named and the tests that need them skip (under CI they fail instead).
set -uo pipefail
cd "$(dirname "$0")/.."

log() { echo "services: $*" >&2; }

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo="sudo -n"
    else
        sudo="none"
    fi
fi

listening() {
    python3 -c "import socket,sys; s=socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(('127.0.0.1', $1)) == 0 else 1)"
}

apt_install() {
    [ "$sudo" = "none" ] && { log "not root: cannot install $*"; return 1; }
    command -v apt-get >/dev/null || { log "no apt-get: cannot install $*"; return 1; }
    log "installing $* from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be missing or stale on a fresh machine.
    $sudo apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 && return 0
    $sudo apt-get update -q >/dev/null 2>&1
    $sudo apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1
}

wait_port() {  # port seconds
    local i
    for ((i = 0; i < $2; i++)); do
        listening "$1" && return 0
        sleep 1
    done
    return 1
}

start_redis() {
    listening 6379 && { log "redis already listening on 6379"; return 0; }
    command -v redis-server >/dev/null || apt_install redis-server || return 1
    # No init system here: run it directly, in the background, on loopback only.
    redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save "" --appendonly no \
        >/dev/null || return 1
    wait_port 6379 30 && log "redis on 127.0.0.1:6379"
}

start_rabbitmq() {
    listening 5672 && { log "rabbitmq already listening on 5672"; return 0; }
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server || return 1
    local runner=()
    [ "$sudo" != "none" ] && [ -n "$sudo" ] && runner=($sudo)
    # The Debian wrapper switches to the rabbitmq user itself.
    "${runner[@]}" env RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached \
        >/dev/null 2>&1 || return 1
    wait_port 5672 120 && log "rabbitmq on 127.0.0.1:5672"
}

case "${1:-}" in
    start)
        failed=()
        start_redis || failed+=(redis)
        start_rabbitmq || failed+=(rabbitmq)
        if [ -n "${OPENSEARCH_URL:-}" ]; then
            log "OPENSEARCH_URL is set: using that cluster, no local node"
            out="OPENSEARCH_URL=$OPENSEARCH_URL"
        elif ! out="$(./scripts/opensearch-node.sh start)"; then
            failed+=(opensearch)
        fi
        if [ -n "${OPENSEARCH_3_URL:-}" ]; then
            log "OPENSEARCH_3_URL is set: using that node, no local 3.x one"
            three="OPENSEARCH_3_URL=$OPENSEARCH_3_URL"
        elif three="$(./scripts/opensearch-node.sh --version 3.3.0 start)"; then
            three="OPENSEARCH_3_URL=${three##*OPENSEARCH_URL=}"
        else
            failed+=(opensearch-3.3.0)
            three=""
        fi
        if [ -n "${OPENSEARCH_CLUSTER_URL:-}" ]; then
            log "OPENSEARCH_CLUSTER_URL is set: using that cluster, no local one"
            cluster="OPENSEARCH_CLUSTER_URL=$OPENSEARCH_CLUSTER_URL"
        elif cluster="$(./scripts/opensearch-node.sh start --nodes 3)"; then
            cluster="OPENSEARCH_CLUSTER_URL=${cluster##*OPENSEARCH_URL=}"
        else
            failed+=(opensearch-cluster)
            cluster=""
        fi
        [ ${#failed[@]} -eq 0 ] || log "could not start: ${failed[*]}"
        [ -n "${three:-}" ] && echo "${three##*$'\n'}"
        [ -n "${cluster:-}" ] && echo "${cluster##*$'\n'}"
        [ -n "${out:-}" ] && echo "${out##*$'\n'}"
        [ ${#failed[@]} -eq 0 ]
        ;;
    stop)
        ./scripts/opensearch-node.sh stop
        ./scripts/opensearch-node.sh stop --nodes 3
        ./scripts/opensearch-node.sh --version 3.3.0 stop
        redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true
        rabbitmqctl stop >/dev/null 2>&1 || true
        ;;
    *)
        echo "usage: $0 start | stop" >&2
        exit 2
        ;;
esac
