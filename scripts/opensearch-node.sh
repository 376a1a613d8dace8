#!/usr/bin/env bash
# A local single-node OpenSearch 2.19.1 with the k-NN and neural-search plugins (or, with
# `--version 3.3.0` first, a 3.3.0 node with k-NN on Temurin 25), assembled from Maven Central
# only (through Maven, the registry client of this machine; no other download).
#
#   scripts/opensearch-node.sh start [-E key=value ...]   prints OPENSEARCH_URL=... last, once healthy
#   scripts/opensearch-node.sh stop
#   scripts/opensearch-node.sh status                     exit 0 and the URL when it runs, 1 when not
#
# A local cluster of N nodes (all cluster-manager-eligible, found by seed hosts, 512 MiB of heap
# each unless MODALFUSE_OPENSEARCH_HEAP says otherwise), beside the single node:
#
#   scripts/opensearch-node.sh start --nodes 3   green before it returns; the last line is
#                                                OPENSEARCH_URL=<every node's URL, comma-separated>
#   scripts/opensearch-node.sh status --nodes 3  each node's state; exit 1 unless all run
#   scripts/opensearch-node.sh kill NODE         kill -9 node NODE (0, 1, ...) of the cluster
#   scripts/opensearch-node.sh restart NODE      stop node NODE if it runs, start it again; returns
#                                                once it has joined (wait for green before the next)
#   scripts/opensearch-node.sh stop --nodes 3    stop the cluster (a plain stop: the single node)
#
# Environment:
#   MODALFUSE_OPENSEARCH_HOME   the cached install (default: ~/.cache/modalfuse, or
#                               /var/cache/modalfuse as root, since the node's user must read it)
#   MODALFUSE_OPENSEARCH_RUN    data, logs, pid and port of this node (default: $HOME_DIR/run);
#                               give each extra node its own
#   MODALFUSE_OPENSEARCH_CLUSTER  the cluster's nodes' folders, node-0, node-1, ... (default:
#                               $HOME_DIR/cluster)
#   MODALFUSE_OPENSEARCH_HEAP   heap size (default 1g)
#   MODALFUSE_OPENSEARCH_PORT   HTTP port (default: the port this node had before, else a free one)
#   MODALFUSE_OPENSEARCH_USER   the user the node runs as when started by root (default opensearch)
#   MODALFUSE_OPENSEARCH_START_TIMEOUT   seconds to wait for a healthy cluster (default 180)
#
# The integ-test distribution carries only the transport module: lang-painless (which k-NN
# extends) and analysis-common (the english analyzer) are added as modules from their jars.
# The k-NN zip carries no native libraries (k-NN issue #2643), so only `engine: lucene` indexes
# here; faiss and nmslib fail at index time.
set -euo pipefail

# `--version 3.3.0` first (or MODALFUSE_OPENSEARCH_VERSION) picks the 3.x node, in its own cache
# folder with its own ports; plain commands keep the 2.19.1 node CI and the demo use.
VERSION="${MODALFUSE_OPENSEARCH_VERSION:-2.19.1}"
if [ "${1:-}" = "--version" ]; then
    VERSION="${2:?--version needs a version, e.g. 3.3.0}"
    shift 2
fi
case "$VERSION" in
    2.19.1) ;;
    3.3.0) ;;
    *) echo "opensearch-node: version $VERSION is not assembled here (2.19.1 or 3.3.0)" >&2; exit 2 ;;
esac
PLUGIN_VERSION="$VERSION.0"
MAJOR="${VERSION%%.*}"
if [ "$(id -u)" -eq 0 ]; then
    default_home=/var/cache/modalfuse
else
    default_home="${XDG_CACHE_HOME:-$HOME/.cache}/modalfuse"
fi
HOME_DIR="${MODALFUSE_OPENSEARCH_HOME:-$default_home}/opensearch-$VERSION"
RUN_DIR="${MODALFUSE_OPENSEARCH_RUN:-$HOME_DIR/run}"
CLUSTER_DIR="${MODALFUSE_OPENSEARCH_CLUSTER:-$HOME_DIR/cluster}"
HEAP="${MODALFUSE_OPENSEARCH_HEAP:-1g}"
CLUSTER_HEAP="${MODALFUSE_OPENSEARCH_HEAP:-512m}"
NODE_USER="${MODALFUSE_OPENSEARCH_USER:-opensearch}"
START_TIMEOUT="${MODALFUSE_OPENSEARCH_START_TIMEOUT:-180}"
DIST="$HOME_DIR/opensearch-$VERSION"

log() { echo "opensearch-node: $*" >&2; }
die() { log "$*"; exit 1; }

java_home() {
    if [ -n "${OPENSEARCH_JAVA_HOME:-}" ]; then
        echo "$OPENSEARCH_JAVA_HOME"
    elif [ "$MAJOR" -ge 3 ]; then
        # 3.x needs Java 21 or newer: Temurin 25 where this machine has it.
        local jdk
        for jdk in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-21-jdk-amd64; do
            [ -x "$jdk/bin/java" ] && { echo "$jdk"; return 0; }
        done
        die "OpenSearch $VERSION needs Java 21+: set OPENSEARCH_JAVA_HOME"
    elif [ -n "${JAVA_HOME:-}" ]; then
        echo "$JAVA_HOME"
    else
        command -v java >/dev/null || die "no java on PATH: install a JDK 17 or set OPENSEARCH_JAVA_HOME"
        dirname "$(dirname "$(readlink -f "$(command -v java)")")"
    fi
}

# Every artifact in one Maven run: a throw-away pom lists them and copy-dependencies fetches them
# (into ~/.m2 as well, so a second install downloads nothing).
fetch_artifacts() {
    local dest="$1" pom_dir
    command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch OpenSearch from Maven Central"
    pom_dir="$(mktemp -d)"
    local deps="" spec g a v t
    local specs=(
        "org.opensearch.distribution.integ-test-zip:opensearch:$VERSION:zip"
        "org.opensearch.plugin:opensearch-knn:$PLUGIN_VERSION:zip"
    )
    # Central serves no neural-search zip for 3.1-3.3: the 3.x node has no server-side fusion.
    [ "$MAJOR" = 2 ] && specs+=("org.opensearch.plugin:neural-search:$PLUGIN_VERSION:zip")
    for spec in \
        "${specs[@]}" \
        "org.opensearch.plugin:lang-painless:$VERSION:jar" \
        "org.opensearch.plugin:opensearch-scripting-painless-spi:$VERSION:jar" \
        "org.antlr:antlr4-runtime:4.13.1:jar" \
        "org.ow2.asm:asm:9.7:jar" \
        "org.ow2.asm:asm-util:9.7:jar" \
        "org.ow2.asm:asm-tree:9.7:jar" \
        "org.ow2.asm:asm-commons:9.7:jar" \
        "org.ow2.asm:asm-analysis:9.7:jar" \
        "org.opensearch.plugin:analysis-common:$VERSION:jar"; do
        IFS=: read -r g a v t <<<"$spec"
        deps+="<dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version><type>$t</type></dependency>"
    done
    cat >"$pom_dir/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>local.modalfuse</groupId><artifactId>opensearch-node</artifactId><version>1</version>
<packaging>pom</packaging><dependencies>$deps</dependencies></project>
EOF
    log "fetching OpenSearch $VERSION and its plugins ($PLUGIN_VERSION) from Maven Central"
    if ! mvn -q -B -f "$pom_dir/pom.xml" dependency:copy-dependencies \
        -DexcludeTransitive=true -DoutputDirectory="$dest" >"$pom_dir/mvn.log" 2>&1; then
        cat "$pom_dir/mvn.log" >&2
        die "Maven could not fetch the artifacts (see above)"
    fi
    rm -rf "$pom_dir"
}

add_module() {  # name classname description jar...
    local name="$1" classname="$2" description="$3"
    shift 3
    local dir="$DIST/modules/$name"
    mkdir -p "$dir"
    cp "$@" "$dir/"
    cat >"$dir/plugin-descriptor.properties" <<EOF
description=$description
version=$VERSION
name=$name
classname=$classname
java.version=$MODULE_JAVA
opensearch.version=$VERSION
custom.foldername=
extended.plugins=
has.native.controller=false
EOF
}

install() {
    [ -f "$DIST/.modalfuse-complete" ] && return 0
    local stage="$HOME_DIR/artifacts"
    rm -rf "$DIST" "$stage"
    mkdir -p "$HOME_DIR" "$stage"
    fetch_artifacts "$stage"
    if command -v unzip >/dev/null; then
        unzip -q "$stage/opensearch-$VERSION.zip" -d "$HOME_DIR"
    else
        # Python's zipfile keeps no file modes: give the launchers theirs back.
        python3 -m zipfile -e "$stage/opensearch-$VERSION.zip" "$HOME_DIR"
        chmod +x "$DIST"/bin/*
    fi
    # 3.x renamed the module plugin classes and needs Java 21 in the descriptors.
    local painless=org.opensearch.painless.PainlessPlugin
    local common=org.opensearch.analysis.common.CommonAnalysisPlugin
    MODULE_JAVA=11
    if [ "$MAJOR" -ge 3 ]; then
        painless=org.opensearch.painless.PainlessModulePlugin
        common=org.opensearch.analysis.common.CommonAnalysisModulePlugin
        MODULE_JAVA=21
    fi
    add_module lang-painless "$painless" \
        "An easy, safe and fast scripting language for OpenSearch" \
        "$stage/lang-painless-$VERSION.jar" "$stage/opensearch-scripting-painless-spi-$VERSION.jar" \
        "$stage"/antlr4-runtime-*.jar "$stage"/asm-*.jar
    # Painless compiles scripts into classes: the same grant the full distribution ships.
    cat >"$DIST/modules/lang-painless/plugin-security.policy" <<'EOF'
grant {
  permission java.lang.RuntimePermission "createClassLoader";
  permission java.lang.RuntimePermission "getClassLoader";
};
EOF
    add_module analysis-common "$common" \
        "Adds common analysis: language analyzers, stemmers, n-grams" \
        "$stage/analysis-common-$VERSION.jar"
    local java
    java="$(java_home)"
    local plugins=(opensearch-knn)
    [ "$MAJOR" = 2 ] && plugins+=(neural-search)
    for plugin in "${plugins[@]}"; do
        OPENSEARCH_JAVA_HOME="$java" "$DIST/bin/opensearch-plugin" install -b -s \
            "file://$stage/$plugin-$PLUGIN_VERSION.zip" >&2
    done
    rm -rf "$stage"
    touch "$DIST/.modalfuse-complete"
    log "installed in $DIST"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_free() {
    python3 -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try: s.bind(('127.0.0.1', $1))
except OSError: sys.exit(1)"
}

# A pid file can outlive its node (a machine restart): the pid must still be an OpenSearch JVM.
pid_alive() {
    [ -f "$RUN_DIR/pid" ] || return 1
    local pid
    pid="$(cat "$RUN_DIR/pid")"
    kill -0 "$pid" 2>/dev/null && grep -qaE "org.opensearch.bootstrap.OpenSearch|/bin/opensearch" "/proc/$pid/cmdline" 2>/dev/null
}

healthy() {  # port [status [nodes]]
    local query="wait_for_status=${2:-yellow}&timeout=2s"
    [ -n "${3:-}" ] && query+="&wait_for_nodes=$3"
    curl -fsS --max-time 5 "http://127.0.0.1:$1/_cluster/health?$query" >/dev/null 2>&1
}


# Writes $RUN_DIR/config and starts the node's JVM in the background; $RUN_DIR/port (and, in a
# cluster, $RUN_DIR/transport) hold its ports. Args: node name, heap, discovery YAML, -E args.
launch() {
    local name="$1" heap="$2" discovery="$3"
    shift 3
    local port
    port="$(cat "$RUN_DIR/port")"
    mkdir -p "$RUN_DIR/data" "$RUN_DIR/logs" "$RUN_DIR/config/jvm.options.d"
    cp "$DIST/config/jvm.options" "$DIST/config/log4j2.properties" "$RUN_DIR/config/"
    # The JVM's sweeper otherwise reclaims compiled code that sat idle between bursts of work
    # (measured: 2 of every 3 methods compiled, the code cache a fifth full), so each burst of
    # bulk writes paid the JIT again on cores the encoders share. docs/opensearch.md has figures.
    printf '%s\n' '-XX:-UseCodeCacheFlushing' >"$RUN_DIR/config/jvm.options.d/modalfuse.options"
    cat >"$RUN_DIR/config/opensearch.yml" <<EOF
cluster.name: ${CLUSTER_NAME:-modalfuse-local}
node.name: $name
path.data: $RUN_DIR/data
path.logs: $RUN_DIR/logs
network.host: 127.0.0.1
http.port: $port
$discovery
cluster.routing.allocation.disk.threshold_enabled: false
# This node's k-NN plugin has no native libraries: faiss and nmslib would crash it at index time.
# modalfuse reads this attribute and refuses such indices before sending any document.
node.attr.knn_native: false
EOF
    if [ "$(id -u)" -eq 0 ]; then
        id "$NODE_USER" >/dev/null 2>&1 \
            || useradd --system --no-create-home --shell /usr/sbin/nologin "$NODE_USER"
        chown -R "$NODE_USER:" "$DIST" "$RUN_DIR"
    fi
    rm -f "$RUN_DIR/pid"
    local java
    java="$(java_home)"
    log "starting $name on 127.0.0.1:$port (data in $RUN_DIR)"
    # In the foreground under setsid, so the launcher's pid is the JVM's (bin/opensearch execs it)
    # and a node that dies at start is seen at once rather than after the timeout.
    local as_user=()
    # setpriv execs (runuser would stay as a parent process between us and the JVM).
    [ "$(id -u)" -eq 0 ] && as_user=(setpriv --reuid="$NODE_USER" --regid="$NODE_USER" --init-groups --reset-env --)
    "${as_user[@]}" setsid env OPENSEARCH_JAVA_HOME="$java" OPENSEARCH_PATH_CONF="$RUN_DIR/config" \
        OPENSEARCH_JAVA_OPTS="-Xms$heap -Xmx$heap ${OPENSEARCH_JAVA_OPTS:-}" \
        "$DIST/bin/opensearch" "$@" </dev/null >"$RUN_DIR/logs/stdout.log" 2>&1 &
    echo $! >"$RUN_DIR/pid"
}

# Waits until the node of $RUN_DIR answers with the status (and node count) asked for.
await() {  # status [nodes]
    local port waited=0
    port="$(cat "$RUN_DIR/port")"
    until healthy "$port" "$1" "${2:-}"; do
        sleep 1
        waited=$((waited + 1))
        # The process itself, not pid_alive: until the launcher has exec'd the JVM, its command
        # line is setpriv's or env's, which pid_alive (made for stale pid files) would refuse.
        if [ "$waited" -ge "$START_TIMEOUT" ] || ! kill -0 "$(cat "$RUN_DIR/pid")" 2>/dev/null; then
            tail -n 40 "$RUN_DIR/logs/stdout.log" >&2 || true
            log "not $1 after ${waited}s (the end of its output is above; full log in $RUN_DIR/logs)"
            return 1
        fi
    done
    log "$1 after ${waited}s (pid $(cat "$RUN_DIR/pid"))"
}

# Keeps a port across restarts, so a client that knew the node finds it again.
keep_port() {  # file [fixed]
    local port="${2:-}"
    if [ -z "$port" ]; then
        if [ -f "$1" ] && port_free "$(cat "$1")"; then
            port="$(cat "$1")"
        else
            port="$(free_port)"
        fi
    fi
    echo "$port" >"$1"
}

start() {
    if pid_alive && healthy "$(cat "$RUN_DIR/port")"; then
        log "already running (pid $(cat "$RUN_DIR/pid"))"
        echo "OPENSEARCH_URL=http://127.0.0.1:$(cat "$RUN_DIR/port")"
        return 0
    fi
    install
    mkdir -p "$RUN_DIR"
    keep_port "$RUN_DIR/port" "${MODALFUSE_OPENSEARCH_PORT:-}"
    launch modalfuse-local-0 "$HEAP" "discovery.type: single-node" "$@"
    if ! await yellow; then
        stop >/dev/null 2>&1 || true
        die "the node did not start"
    fi
    echo "OPENSEARCH_URL=http://127.0.0.1:$(cat "$RUN_DIR/port")"
}

node_dir() { echo "$CLUSTER_DIR/node-$1"; }

cluster_size() {  # the cluster's node folders
    local n=0
    while [ -f "$(node_dir "$n")/port" ]; do n=$((n + 1)); done
    echo "$n"
}

cluster_urls() {
    local n="$1" i urls=""
    for ((i = 0; i < n; i++)); do
        urls+="${urls:+,}http://127.0.0.1:$(cat "$(node_dir "$i")/port")"
    done
    echo "$urls"
}

# A node's discovery: every node's transport port is a seed host; the first election names
# every node (ignored once the cluster has formed).
cluster_discovery() {  # n
    local n="$1" i seeds="" names=""
    for ((i = 0; i < n; i++)); do
        seeds+="${seeds:+, }\"127.0.0.1:$(cat "$(node_dir "$i")/transport")\""
        names+="${names:+, }\"modalfuse-node-$i\""
    done
    printf 'transport.port: %s\ndiscovery.seed_hosts: [%s]\ncluster.initial_cluster_manager_nodes: [%s]\n' \
        "$(cat "$RUN_DIR/transport")" "$seeds" "$names"
}

start_node() {  # i n -E...
    local i="$1" n="$2"
    shift 2
    RUN_DIR="$(node_dir "$i")"
    if pid_alive; then
        log "node $i already running (pid $(cat "$RUN_DIR/pid"))"
        return 0
    fi
    CLUSTER_NAME=modalfuse-cluster launch "modalfuse-node-$i" "$CLUSTER_HEAP" \
        "$(cluster_discovery "$n")" "$@"
}

start_cluster() {  # n -E...
    local n="$1" i
    shift
    [ "$n" -ge 2 ] || die "--nodes needs at least 2 (a plain start gives the single node)"
    local known
    known="$(cluster_size)"
    [ "$known" -eq 0 ] || [ "$known" -eq "$n" ] \
        || die "$CLUSTER_DIR holds a cluster of $known nodes: stop it and remove the folder first"
    install
    # Ports first: every node's seed list names every transport port.
    for ((i = 0; i < n; i++)); do
        RUN_DIR="$(node_dir "$i")"
        mkdir -p "$RUN_DIR"
        pid_alive && continue
        keep_port "$RUN_DIR/port"
        keep_port "$RUN_DIR/transport"
    done
    for ((i = 0; i < n; i++)); do start_node "$i" "$n" "$@"; done
    RUN_DIR="$(node_dir 0)"
    if ! await green "$n"; then
        stop_cluster "$n" >/dev/null 2>&1 || true
        die "the cluster did not form"
    fi
    echo "OPENSEARCH_URL=$(cluster_urls "$n")"
}

kill_node() {  # i
    RUN_DIR="$(node_dir "$1")"
    pid_alive || die "node $1 is not running"
    kill -9 "$(cat "$RUN_DIR/pid")"
    rm -f "$RUN_DIR/pid"
    log "node $1: killed (kill -9)"
}

restart_node() {  # i: stopped if it runs, started again; returns once the cluster counts it
    local i="$1" n      # (its shards may still be recovering: wait for green before the next)
    n="$(cluster_size)"
    [ "$i" -lt "$n" ] || die "no node $i in a cluster of $n"
    RUN_DIR="$(node_dir "$i")"
    stop_one "node $i"
    start_node "$i" "$n"
    RUN_DIR="$(node_dir "$i")"
    await yellow "$n" || die "node $i did not rejoin"
    echo "OPENSEARCH_URL=$(cluster_urls "$n")"
}

stop_cluster() {  # n
    local n="$1" i
    for ((i = 0; i < n; i++)); do
        RUN_DIR="$(node_dir "$i")"
        stop_one "node $i"
    done
}

status_cluster() {  # n
    local n="$1" i bad=0
    for ((i = 0; i < n; i++)); do
        RUN_DIR="$(node_dir "$i")"
        if pid_alive && healthy "$(cat "$RUN_DIR/port")"; then
            echo "node $i: running (pid $(cat "$RUN_DIR/pid")) http://127.0.0.1:$(cat "$RUN_DIR/port")"
        elif pid_alive; then
            echo "node $i: starting or unhealthy (pid $(cat "$RUN_DIR/pid"))"
            bad=1
        else
            echo "node $i: not running"
            bad=1
        fi
    done
    [ "$bad" -eq 0 ] && echo "OPENSEARCH_URL=$(cluster_urls "$n")"
    return "$bad"
}

stop_one() {  # label
    if ! pid_alive; then
        log "${1:-the node}: not running"
        rm -f "$RUN_DIR/pid"
        return 0
    fi
    local pid waited=0
    pid="$(cat "$RUN_DIR/pid")"
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$waited" -ge 60 ]; then
            log "still running after 60s: killing"
            kill -9 "$pid" 2>/dev/null || true
        fi
        sleep 1
        waited=$((waited + 1))
    done
    rm -f "$RUN_DIR/pid"
    log "${1:-the node}: stopped"
}

stop() { stop_one; }

status() {
    if pid_alive && healthy "$(cat "$RUN_DIR/port")"; then
        echo "running (pid $(cat "$RUN_DIR/pid")) OPENSEARCH_URL=http://127.0.0.1:$(cat "$RUN_DIR/port")"
    elif pid_alive; then
        echo "starting or unhealthy (pid $(cat "$RUN_DIR/pid"))"
        return 1
    else
        echo "not running"
        return 1
    fi
}

cmd="${1:-}"
shift || true
NODES=""
if [ "${1:-}" = "--nodes" ]; then
    NODES="${2:?--nodes needs a count}"
    shift 2
fi
case "$cmd" in
    start) if [ -n "$NODES" ]; then start_cluster "$NODES" "$@"; else start "$@"; fi ;;
    stop) if [ -n "$NODES" ]; then stop_cluster "$NODES"; else stop; fi ;;
    status) if [ -n "$NODES" ]; then status_cluster "$NODES"; else status; fi ;;
    kill) kill_node "${1:?kill needs a node number}" ;;
    restart) restart_node "${1:?restart needs a node number}" ;;
    install) install ;;
    *) die "usage: $0 start [--nodes N] [-E key=value ...] | stop [--nodes N] | status [--nodes N] | kill NODE | restart NODE | install" ;;
esac
