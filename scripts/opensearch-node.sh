#!/usr/bin/env bash
# A local single-node OpenSearch 2.19.1 with the k-NN and neural-search plugins, assembled from
# Maven Central only (through Maven, the registry client of this machine; no other download).
#
#   scripts/opensearch-node.sh start [-E key=value ...]   prints OPENSEARCH_URL=... last, once healthy
#   scripts/opensearch-node.sh stop
#   scripts/opensearch-node.sh status                     exit 0 and the URL when it runs, 1 when not
#
# Environment:
#   MODALFUSE_OPENSEARCH_HOME   the cached install (default: ~/.cache/modalfuse, or
#                               /var/cache/modalfuse as root, since the node's user must read it)
#   MODALFUSE_OPENSEARCH_RUN    data, logs, pid and port of this node (default: $HOME_DIR/run);
#                               give each extra node its own
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

VERSION=2.19.1
PLUGIN_VERSION=2.19.1.0
if [ "$(id -u)" -eq 0 ]; then
    default_home=/var/cache/modalfuse
else
    default_home="${XDG_CACHE_HOME:-$HOME/.cache}/modalfuse"
fi
HOME_DIR="${MODALFUSE_OPENSEARCH_HOME:-$default_home}/opensearch-$VERSION"
RUN_DIR="${MODALFUSE_OPENSEARCH_RUN:-$HOME_DIR/run}"
HEAP="${MODALFUSE_OPENSEARCH_HEAP:-1g}"
NODE_USER="${MODALFUSE_OPENSEARCH_USER:-opensearch}"
START_TIMEOUT="${MODALFUSE_OPENSEARCH_START_TIMEOUT:-180}"
DIST="$HOME_DIR/opensearch-$VERSION"

log() { echo "opensearch-node: $*" >&2; }
die() { log "$*"; exit 1; }

java_home() {
    if [ -n "${OPENSEARCH_JAVA_HOME:-}" ]; then
        echo "$OPENSEARCH_JAVA_HOME"
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
    for spec in \
        "org.opensearch.distribution.integ-test-zip:opensearch:$VERSION:zip" \
        "org.opensearch.plugin:opensearch-knn:$PLUGIN_VERSION:zip" \
        "org.opensearch.plugin:neural-search:$PLUGIN_VERSION:zip" \
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
    log "fetching OpenSearch $VERSION, k-NN and neural-search $PLUGIN_VERSION from Maven Central"
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
java.version=11
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
    add_module lang-painless org.opensearch.painless.PainlessPlugin \
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
    add_module analysis-common org.opensearch.analysis.common.CommonAnalysisPlugin \
        "Adds common analysis: language analyzers, stemmers, n-grams" \
        "$stage/analysis-common-$VERSION.jar"
    local java
    java="$(java_home)"
    for plugin in opensearch-knn neural-search; do
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

healthy() {
    curl -fsS --max-time 5 "http://127.0.0.1:$1/_cluster/health?wait_for_status=yellow&timeout=2s" \
        >/dev/null 2>&1
}


start() {
    if pid_alive && healthy "$(cat "$RUN_DIR/port")"; then
        log "already running (pid $(cat "$RUN_DIR/pid"))"
        echo "OPENSEARCH_URL=http://127.0.0.1:$(cat "$RUN_DIR/port")"
        return 0
    fi
    install
    mkdir -p "$RUN_DIR/data" "$RUN_DIR/logs" "$RUN_DIR/config"
    local port="${MODALFUSE_OPENSEARCH_PORT:-}"
    if [ -z "$port" ]; then
        # Keep the port across restarts so a client that knew the node finds it again.
        if [ -f "$RUN_DIR/port" ] && port_free "$(cat "$RUN_DIR/port")"; then
            port="$(cat "$RUN_DIR/port")"
        else
            port="$(free_port)"
        fi
    fi
    echo "$port" >"$RUN_DIR/port"
    cp "$DIST/config/jvm.options" "$DIST/config/log4j2.properties" "$RUN_DIR/config/"
    mkdir -p "$RUN_DIR/config/jvm.options.d"
    cat >"$RUN_DIR/config/opensearch.yml" <<EOF
cluster.name: modalfuse-local
node.name: modalfuse-local-0
path.data: $RUN_DIR/data
path.logs: $RUN_DIR/logs
network.host: 127.0.0.1
http.port: $port
discovery.type: single-node
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
    log "starting on 127.0.0.1:$port (data in $RUN_DIR)"
    # In the foreground under setsid, so the launcher's pid is the JVM's (bin/opensearch execs it)
    # and a node that dies at start is seen at once rather than after the timeout.
    local as_user=()
    # setpriv execs (runuser would stay as a parent process between us and the JVM).
    [ "$(id -u)" -eq 0 ] && as_user=(setpriv --reuid="$NODE_USER" --regid="$NODE_USER" --init-groups --reset-env --)
    "${as_user[@]}" setsid env OPENSEARCH_JAVA_HOME="$java" OPENSEARCH_PATH_CONF="$RUN_DIR/config" \
        OPENSEARCH_JAVA_OPTS="-Xms$HEAP -Xmx$HEAP ${OPENSEARCH_JAVA_OPTS:-}" \
        "$DIST/bin/opensearch" "$@" </dev/null >"$RUN_DIR/logs/stdout.log" 2>&1 &
    echo $! >"$RUN_DIR/pid"
    local waited=0
    until healthy "$port"; do
        if [ "$waited" -ge "$START_TIMEOUT" ] || ! pid_alive; then
            tail -n 40 "$RUN_DIR/logs/stdout.log" >&2 || true
            stop >/dev/null 2>&1 || true
            die "not healthy after ${waited}s (the end of its output is above; full log in $RUN_DIR/logs)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "healthy after ${waited}s (pid $(cat "$RUN_DIR/pid"))"
    echo "OPENSEARCH_URL=http://127.0.0.1:$port"
}

stop() {
    if ! pid_alive; then
        log "not running"
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
    log "stopped"
}

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
case "$cmd" in
    start) start "$@" ;;
    stop) stop ;;
    status) status ;;
    install) install ;;
    *) die "usage: $0 start [-E key=value ...] | stop | status | install" ;;
esac
