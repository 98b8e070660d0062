#!/usr/bin/env bash
# Apache Kafka beside skein: a tool of the tests and the benchmark, never a dependency of skein.
#
# Resolves a pinned Apache Kafka (broker + command-line tools, with every dependency) from Maven
# Central through a small generated pom and `mvn dependency:copy-dependencies` (checksums checked
# strictly by Maven), cached under target/kafka/<version>/ (CI caches target/), and beside it Kafka
# Connect (connect-runtime + connect-file, the FileStream connectors) under
# target/kafka/connect-<version>/. Nothing of it is committed.
#
#   ci/kafka.sh resolve                 download once, Kafka and Connect (idempotent; quiet when cached)
#   ci/kafka.sh classpath               print the classpath (resolves first if needed)
#   ci/kafka.sh tool NAME|CLASS ARGS... run one of Kafka's command-line tools (the perf tests with
#                                       the JVM settings of Kafka's scripts), e.g.
#                                         ci/kafka.sh tool kafka-topics --bootstrap-server 127.0.0.1:9092 --list
#                                         ci/kafka.sh tool org.apache.kafka.tools.TopicCommand --version
#   ci/kafka.sh tools                   list the tool names and their main classes
#   ci/kafka.sh start-broker DIR PORT [CONTROLLER_PORT] [key=value...]
#                                       format a KRaft data dir under DIR (once) and start ONE Kafka
#                                       broker in combined mode (broker + controller) on
#                                       127.0.0.1:PORT, controller on CONTROLLER_PORT (default
#                                       PORT+1); key=value pairs are added to its server.properties
#                                       (e.g. flush.messages=1); waits until it serves; pid in
#                                       DIR/kafka.pid, log in DIR/kafka.log
#   ci/kafka.sh stop-broker DIR         SIGTERM, up to KAFKA_STOP_TIMEOUT (30) s, then SIGKILL
#   ci/kafka.sh start-cluster DIR PORT [key=value...]
#                                       three combined-mode nodes (a three-voter KRaft quorum) in
#                                       DIR/n1..n3, node i on 127.0.0.1:PORT+100*(i-1), controller
#                                       one port above; formatted once with one cluster id;
#                                       idempotent (a running cluster is left as it is); prints
#                                       the bootstrap servers
#   ci/kafka.sh stop-cluster DIR        stops the three nodes at once (as stop-broker)
#   ci/kafka.sh connect-classpath       print Kafka Connect's classpath (resolves it first if needed)
#   ci/kafka.sh connect-worker PROPS    run Kafka Connect's distributed worker (ConnectDistributed,
#                                       the file connectors on its classpath) in the foreground with
#                                       the worker properties file PROPS, logging INFO to stdout;
#                                       the JVM replaces this script (exec: signal the pid it started)
#
# Environment: SKEIN_KAFKA_VERSION and SKEIN_CONNECT_VERSION (defaults below), CARGO_TARGET_DIR (default: the repo's target/),
# KAFKA_HEAP (each broker's heap, -Xms and -Xmx, default 512m), KAFKA_TOOL_JAVA_OPTS (extra JVM flags for tools).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# 4.4.0: the newest 4.x that Maven Central serves here; its broker runs on Java 17.
KAFKA_VERSION="${SKEIN_KAFKA_VERSION:-4.4.0}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
KAFKA_ROOT="$TARGET/kafka"
KHOME="$KAFKA_ROOT/$KAFKA_VERSION"
LIBS="$KHOME/libs"
CP_FILE="$KHOME/classpath.txt"
M2="$KAFKA_ROOT/m2"
# Kafka Connect in its own set of jars, all of one version: the file connectors (connect-file) are
# served on Maven Central only up to 4.3.1 here, and 4.3.1's do not run in a 4.4.0 worker (their
# version() calls org.apache.kafka.common.utils.AppInfoParser, which 4.4.0's kafka-clients moved
# to common.utils.internals: NoClassDefFoundError).
CONNECT_VERSION="${SKEIN_CONNECT_VERSION:-4.3.1}"
CHOME="$KAFKA_ROOT/connect-$CONNECT_VERSION"
CLIBS="$CHOME/libs"
CCP_FILE="$CHOME/classpath.txt"

log() { echo "[ci/kafka] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# The command-line tools, by the name of their kafka-*.sh script in Kafka's distribution (4.x).
tool_class() {
  case "$1" in
    kafka-topics) echo org.apache.kafka.tools.TopicCommand ;;
    kafka-configs) echo org.apache.kafka.tools.ConfigCommand ;;
    kafka-consumer-groups) echo org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    kafka-console-producer) echo org.apache.kafka.tools.ConsoleProducer ;;
    kafka-console-consumer) echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    kafka-get-offsets) echo org.apache.kafka.tools.GetOffsetShell ;;
    kafka-metadata-quorum) echo org.apache.kafka.tools.MetadataQuorumCommand ;;
    kafka-broker-api-versions) echo org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    kafka-cluster) echo org.apache.kafka.tools.ClusterTool ;;
    kafka-features) echo org.apache.kafka.tools.FeatureCommand ;;
    kafka-delete-records) echo org.apache.kafka.tools.DeleteRecordsCommand ;;
    kafka-log-dirs) echo org.apache.kafka.tools.LogDirsCommand ;;
    kafka-groups) echo org.apache.kafka.tools.GroupsCommand ;;
    kafka-transactions) echo org.apache.kafka.tools.TransactionsCommand ;;
    kafka-leader-election) echo org.apache.kafka.tools.LeaderElectionCommand ;;
    kafka-producer-perf-test) echo org.apache.kafka.tools.ProducerPerformance ;;
    kafka-consumer-perf-test) echo org.apache.kafka.tools.ConsumerPerformance ;;
    kafka-storage) echo kafka.tools.StorageTool ;;
    kafka-server-start) echo kafka.Kafka ;;
    *.*) echo "$1" ;; # a class name
    *) return 1 ;;
  esac
}
TOOL_NAMES="kafka-topics kafka-configs kafka-consumer-groups kafka-console-producer
kafka-console-consumer kafka-get-offsets kafka-metadata-quorum kafka-broker-api-versions
kafka-cluster kafka-features kafka-delete-records kafka-log-dirs kafka-groups kafka-transactions
kafka-leader-election kafka-producer-perf-test kafka-consumer-perf-test kafka-storage
kafka-server-start"

# True when classpath file $1 exists and every jar it lists is there.
classpath_ok() {
  [ -s "$1" ] || return 1
  local jar
  while IFS= read -r jar; do [ -f "$jar" ] || return 1; done < <(tr ':' '\n' <"$1")
}

resolved() { classpath_ok "$CP_FILE"; }

resolve() {
  resolved && return 0
  command -v java >/dev/null 2>&1 || die "java is not installed (Kafka $KAFKA_VERSION needs Java 17+)"
  command -v mvn >/dev/null 2>&1 || die "mvn is not installed (apt-get install maven)"
  mkdir -p "$KHOME"
  log "resolving Apache Kafka $KAFKA_VERSION (kafka_2.13 + kafka-tools) from Maven Central into $KHOME"
  cat >"$KHOME/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by ci/kafka.sh: Apache Kafka's broker and tools as a tool of skein's tests. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>skein.tests</groupId>
  <artifactId>apache-kafka</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- slf4j 1.7 -> log4j2, as Kafka's distribution ships it -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$LIBS.tmp"
  local out
  # -C: a checksum mismatch fails the download instead of warning.
  if ! out="$(cd "$KHOME" && mvn -B -q -C -Dmaven.repo.local="$M2" \
      dependency:copy-dependencies -DoutputDirectory="$LIBS.tmp" 2>&1)"; then
    echo "$out" >&2
    die "mvn dependency:copy-dependencies for Apache Kafka $KAFKA_VERSION"
  fi
  ls "$LIBS.tmp"/kafka_2.13-"$KAFKA_VERSION".jar "$LIBS.tmp"/kafka-tools-"$KAFKA_VERSION".jar >/dev/null \
    || die "the Kafka jars are missing after mvn dependency:copy-dependencies"
  rm -rf "$LIBS" "$KHOME/tools.jsa"
  mv "$LIBS.tmp" "$LIBS"
  # log4j2 configurations: tools log warnings to stderr (as Kafka's tools-log4j2.yaml), the
  # broker logs INFO to its stdout (redirected to DIR/kafka.log).
  cat >"$KHOME/log4j2-tools.properties" <<'EOF'
status = error
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
  cat >"$KHOME/log4j2-broker.properties" <<'EOF'
status = error
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = org.apache.kafka
logger.kafka.level = INFO
EOF
  (cd "$LIBS" && ls -1 ./*.jar | sed "s#^\./#$LIBS/#" | paste -sd: -) >"$CP_FILE.tmp"
  mv "$CP_FILE.tmp" "$CP_FILE"
  log "Apache Kafka $KAFKA_VERSION: $(ls "$LIBS" | wc -l) jars, $(du -sh "$LIBS" | cut -f1) in $LIBS"
}

connect_resolved() { classpath_ok "$CCP_FILE"; }

resolve_connect() {
  connect_resolved && return 0
  command -v java >/dev/null 2>&1 || die "java is not installed (Kafka Connect $CONNECT_VERSION needs Java 17+)"
  command -v mvn >/dev/null 2>&1 || die "mvn is not installed (apt-get install maven)"
  mkdir -p "$CHOME"
  log "resolving Kafka Connect $CONNECT_VERSION (connect-runtime + connect-file) from Maven Central into $CHOME"
  cat >"$CHOME/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by ci/kafka.sh: Kafka Connect's worker and file connectors as a tool of skein's tests. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>skein.tests</groupId>
  <artifactId>apache-kafka-connect</artifactId>
  <version>$CONNECT_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId><version>$CONNECT_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-file</artifactId><version>$CONNECT_VERSION</version></dependency>
    <!-- slf4j 1.7 -> log4j2, as Kafka's distribution ships it -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$CLIBS.tmp"
  local out
  if ! out="$(cd "$CHOME" && mvn -B -q -C -Dmaven.repo.local="$M2" \
      dependency:copy-dependencies -DoutputDirectory="$CLIBS.tmp" 2>&1)"; then
    echo "$out" >&2
    die "mvn dependency:copy-dependencies for Kafka Connect $CONNECT_VERSION"
  fi
  ls "$CLIBS.tmp"/connect-runtime-"$CONNECT_VERSION".jar "$CLIBS.tmp"/connect-file-"$CONNECT_VERSION".jar >/dev/null \
    || die "the Kafka Connect jars are missing after mvn dependency:copy-dependencies"
  rm -rf "$CLIBS"
  mv "$CLIBS.tmp" "$CLIBS"
  # The worker logs INFO to its stdout (the caller keeps it in a file), the HTTP server's chatter left out.
  cat >"$CHOME/log4j2-connect.properties" <<'EOF'
status = error
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.jetty.name = org.eclipse.jetty
logger.jetty.level = WARN
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
EOF
  (cd "$CLIBS" && ls -1 ./*.jar | sed "s#^\./#$CLIBS/#" | paste -sd: -) >"$CCP_FILE.tmp"
  mv "$CCP_FILE.tmp" "$CCP_FILE"
  log "Kafka Connect $CONNECT_VERSION: $(ls "$CLIBS" | wc -l) jars, $(du -sh "$CLIBS" | cut -f1) in $CLIBS"
}

# connect_worker PROPS: ConnectDistributed in the foreground, exec'd. C1 and the serial collector
# start it faster on 2 cores; a test worker moves a few records.
connect_worker() {
  [ $# -eq 1 ] || die "usage: ci/kafka.sh connect-worker WORKER.PROPERTIES"
  resolve_connect
  # shellcheck disable=SC2086
  exec java -Xms128m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$CHOME/log4j2-connect.properties" -cp "$(cat "$CCP_FILE")" \
    ${KAFKA_TOOL_JAVA_OPTS:-} org.apache.kafka.connect.cli.ConnectDistributed "$1"
}

# Short-lived JVMs: C1 only and the serial collector start faster; Kafka's scripts give tools 256 MB.
TOOL_JVM=(-Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto)

run_tool() {
  [ $# -ge 1 ] || die "usage: ci/kafka.sh tool NAME|CLASS ARGS..."
  local cls
  cls="$(tool_class "$1")" || die "unknown tool '$1' (ci/kafka.sh tools lists them; or give a main class)"
  local name="$1"
  shift
  resolve
  case "$name" in
    *-perf-test)
      # A load generator is measured, not started often: the JIT's full tiers and the heap and
      # collector of Kafka's own kafka-*-perf-test.sh (512 MB, G1), no class-data archive.
      # shellcheck disable=SC2086
      exec java -Xms512m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Dlog4j2.configurationFile="$KHOME/log4j2-tools.properties" -cp "$(cat "$CP_FILE")" \
        ${KAFKA_TOOL_JAVA_OPTS:-} "$cls" "$@"
      ;;
  esac
  # A class-data-sharing archive of the classes the first tool run loaded halves the CPU time
  # of every later start (about 0.9 -> 0.45 CPU-s). JVM warnings (a stale archive) go to stderr,
  # never into the tool's output.
  local jsa="$KHOME/tools.jsa" tmp=""
  local jvm=("${TOOL_JVM[@]}" -Xlog:disable)
  if [ -f "$jsa" ]; then
    jvm+=(-Xlog:all=warning:stderr -XX:SharedArchiveFile="$jsa")
  else
    # (the dump's own warnings, about classes it cannot archive, are left out)
    tmp="$jsa.$$.tmp"
    jvm+=(-XX:ArchiveClassesAtExit="$tmp")
  fi
  jvm+=(-Dlog4j2.configurationFile="$KHOME/log4j2-tools.properties" -cp "$(cat "$CP_FILE")")
  if [ -z "$tmp" ]; then
    # shellcheck disable=SC2086
    exec java "${jvm[@]}" ${KAFKA_TOOL_JAVA_OPTS:-} "$cls" "$@"
  fi
  local rc=0
  # shellcheck disable=SC2086
  java "${jvm[@]}" ${KAFKA_TOOL_JAVA_OPTS:-} "$cls" "$@" || rc=$?
  if [ -s "$tmp" ]; then mv -f "$tmp" "$jsa"; else rm -f "$tmp"; fi
  exit "$rc"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A cluster id is 16 random bytes in URL-safe base64 without padding (not starting with '-').
new_cluster_id() {
  local id
  id="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
  while [ "${id:0:1}" = "-" ]; do id="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"; done
  echo "$id"
}

# write_node DIR NODE_ID PORT CPORT VOTERS RF [key=value...]: DIR/server.properties for one
# combined-mode node (broker + controller); the key=value pairs are appended (later wins).
write_node() {
  local dir="$1" node="$2" port="$3" cport="$4" voters="$5" rf="$6"
  shift 6
  local isr=$((rf < 2 ? 1 : 2))
  {
    cat <<EOF
# Written by ci/kafka.sh: Apache Kafka $KAFKA_VERSION node $node, KRaft combined mode, loopback only.
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
EOF
    local kv
    for kv in "$@"; do
      case "$kv" in *=*) echo "$kv" ;; *) die "not a key=value broker setting: '$kv'" ;; esac
    done
  } >"$dir/server.properties"
}

# format_node DIR CLUSTER_ID: kafka-storage format, once (a formatted dir is left as it is).
format_node() {
  local dir="$1" id="$2" out
  [ -f "$dir/data/meta.properties" ] && return 0
  if ! out="$(java "${TOOL_JVM[@]}" -Dlog4j2.configurationFile="$KHOME/log4j2-tools.properties" \
      -cp "$(cat "$CP_FILE")" kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" 2>&1)"; then
    echo "$out" >&2
    die "kafka-storage format of $dir/data"
  fi
}

running() { [ -f "$1/kafka.pid" ] && kill -0 "$(cat "$1/kafka.pid")" 2>/dev/null; }

# launch_node DIR: starts the JVM in the background (-Xms = -Xmx = KAFKA_HEAP); pid in DIR/kafka.pid.
launch_node() {
  local dir="$1" heap="${KAFKA_HEAP:-512m}"
  # setsid: the broker outlives this script and does not get the caller's terminal signals.
  setsid java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$KHOME/log4j2-broker.properties" \
    -cp "$(cat "$CP_FILE")" kafka.Kafka "$dir/server.properties" >>"$dir/kafka.log" 2>&1 </dev/null &
  echo "$!" >"$dir/kafka.pid"
}

# wait_node DIR PORT DEADLINE: until the node logs that it started and its port accepts.
wait_node() {
  local dir="$1" port="$2" deadline="$3" pid
  pid="$(cat "$dir/kafka.pid")"
  while [ $SECONDS -lt "$deadline" ]; do
    kill -0 "$pid" 2>/dev/null || { tail -n 40 "$dir/kafka.log" >&2; die "Kafka node exited during start-up (log: $dir/kafka.log)"; }
    if port_open "$port" && grep -q 'Kafka Server started' "$dir/kafka.log"; then return 0; fi
    sleep 0.2
  done
  tail -n 40 "$dir/kafka.log" >&2
  return 1
}

start_broker() {
  [ $# -ge 2 ] || die "usage: ci/kafka.sh start-broker DIR PORT [CONTROLLER_PORT] [key=value...]"
  local dir port cport
  mkdir -p "$1"
  dir="$(cd "$1" && pwd)"
  port="$2"
  shift 2
  cport=$((port + 1))
  if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then cport="$1"; shift; fi
  resolve
  if running "$dir"; then
    die "a Kafka broker already runs from $dir (pid $(cat "$dir/kafka.pid"))"
  fi
  write_node "$dir" 1 "$port" "$cport" "1@127.0.0.1:$cport" 1 "$@"
  format_node "$dir" "$(new_cluster_id)"
  launch_node "$dir"
  local pid
  pid="$(cat "$dir/kafka.pid")"
  if wait_node "$dir" "$port" $((SECONDS + ${KAFKA_START_TIMEOUT:-60})); then
    log "Apache Kafka $KAFKA_VERSION broker pid $pid serves 127.0.0.1:$port (controller $cport, data $dir/data)"
    return 0
  fi
  kill -KILL "$pid" 2>/dev/null || true
  die "Kafka broker did not serve 127.0.0.1:$port within ${KAFKA_START_TIMEOUT:-60}s (log: $dir/kafka.log)"
}

# Node i (1..3) of a cluster: clients on PORT+100*(i-1), its controller one port above.
cluster_port() { echo $(($1 + 100 * ($2 - 1))); }

start_cluster() {
  [ $# -ge 2 ] || die "usage: ci/kafka.sh start-cluster DIR PORT [key=value...]"
  local root base
  mkdir -p "$1"
  root="$(cd "$1" && pwd)"
  base="$2"
  shift 2
  resolve
  local i up=0 bootstrap=""
  for i in 1 2 3; do
    running "$root/n$i" && up=$((up + 1))
    bootstrap+="${bootstrap:+,}127.0.0.1:$(cluster_port "$base" "$i")"
  done
  if [ "$up" -eq 3 ]; then
    log "the Kafka cluster in $root already runs"
    echo "$bootstrap"
    return 0
  fi
  [ "$up" -eq 0 ] || die "only $up of 3 Kafka nodes run from $root: stop-cluster first"
  local voters="" id
  for i in 1 2 3; do voters+="${voters:+,}$i@127.0.0.1:$(($(cluster_port "$base" "$i") + 1))"; done
  id="$(cat "$root/cluster.id" 2>/dev/null || true)"
  [ -n "$id" ] || { id="$(new_cluster_id)"; echo "$id" >"$root/cluster.id"; }
  for i in 1 2 3; do
    mkdir -p "$root/n$i"
    write_node "$root/n$i" "$i" "$(cluster_port "$base" "$i")" $(($(cluster_port "$base" "$i") + 1)) \
      "$voters" 3 "$@"
  done
  # The three formats are JVM starts: in parallel.
  local pids=()
  for i in 1 2 3; do format_node "$root/n$i" "$id" & pids+=($!); done
  for i in "${pids[@]}"; do wait "$i" || die "formatting the cluster's data dirs under $root"; done
  # Each node waits for a quorum of voters: all three start before any is waited for.
  for i in 1 2 3; do launch_node "$root/n$i"; done
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  for i in 1 2 3; do
    if ! wait_node "$root/n$i" "$(cluster_port "$base" "$i")" "$deadline"; then
      stop_cluster "$root"
      die "Kafka node $i did not serve within ${KAFKA_START_TIMEOUT:-90}s (log: $root/n$i/kafka.log)"
    fi
  done
  log "Apache Kafka $KAFKA_VERSION cluster serves $bootstrap (data under $root)"
  echo "$bootstrap"
}

# stop_nodes DIR...: SIGTERM to every node at once, up to KAFKA_STOP_TIMEOUT (30) s, then SIGKILL.
stop_nodes() {
  local dir pid pids=()
  for dir in "$@"; do
    [ -f "$dir/kafka.pid" ] || continue
    pid="$(cat "$dir/kafka.pid")"
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; pids+=("$pid"); fi
    rm -f "$dir/kafka.pid"
  done
  local deadline=$((SECONDS + ${KAFKA_STOP_TIMEOUT:-30}))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "Kafka pid $pid still running ${KAFKA_STOP_TIMEOUT:-30} s after SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

stop_broker() {
  [ $# -ge 1 ] || die "usage: ci/kafka.sh stop-broker DIR"
  [ -f "$1/kafka.pid" ] || { log "no $1/kafka.pid: nothing to stop"; return 0; }
  stop_nodes "$1"
}

stop_cluster() {
  [ $# -ge 1 ] || die "usage: ci/kafka.sh stop-cluster DIR"
  stop_nodes "$1/n1" "$1/n2" "$1/n3"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  resolve) resolve; resolve_connect ;;
  classpath) resolve; cat "$CP_FILE" ;;
  home) echo "$KHOME" ;;
  version) echo "$KAFKA_VERSION" ;;
  tool) run_tool "$@" ;;
  tools) for n in $TOOL_NAMES; do printf '%-28s %s\n' "$n" "$(tool_class "$n")"; done ;;
  start-broker) start_broker "$@" ;;
  stop-broker) stop_broker "$@" ;;
  start-cluster) start_cluster "$@" ;;
  stop-cluster) stop_cluster "$@" ;;
  connect-classpath) resolve_connect; cat "$CCP_FILE" ;;
  connect-worker) connect_worker "$@" ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
