#!/usr/bin/env bash
# Idempotent installer for everything the test suite needs on a clean Debian machine
# (run as root): kcat from Debian's packages and a Python venv at .venv/ in the repo
# root with confluent-kafka, kafka-python and pytest, kafkajs under tests/e2e/js/, Apache
# Kafka's broker and tools jars from Maven Central (ci/kafka.sh, cached under target/kafka/),
# the Java client driver (tests/java, Maven: kafka-clients) built into target/java/, and
# franz-go's test program built with Go into target/go/franzgo.
#
# Quiet when everything is already there; fails loudly (non-zero, with the failing
# command's output) on any error.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="$ROOT/.venv"
# Pinned so CI runs the same clients every time (confluent-kafka bundles librdkafka 2.16).
PY_PKGS=(confluent-kafka==2.16.1 kafka-python==3.0.12 pytest==9.2.0)

log() { echo "[ci/setup] $*" >&2; }

# Run a command quietly; on failure print its output and exit.
quiet() {
  local out
  if ! out="$("$@" 2>&1)"; then
    log "FAILED: $*"
    echo "$out" >&2
    exit 1
  fi
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    quiet $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  quiet $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# --- kcat (Debian's links librdkafka 2.0.x: an old client, a useful compatibility check)
if ! command -v kcat >/dev/null 2>&1; then
  apt_install kcat
fi
command -v kcat >/dev/null 2>&1 || { log "kcat still missing after install"; exit 1; }

# --- Python venv
PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  apt_install python3 python3-venv
  PYTHON=python3
fi

venv_ok() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; }

if ! venv_ok; then
  rm -rf "$VENV"
  log "creating venv at $VENV"
  if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's python3 needs python3-venv for ensurepip.
    rm -rf "$VENV"
    apt_install python3-venv
    quiet "$PYTHON" -m venv "$VENV"
  fi
fi

py_pkgs_ok() {
  "$VENV/bin/python" - "${PY_PKGS[@]}" >/dev/null 2>&1 <<'PYEOF'
import sys
from importlib.metadata import version
import confluent_kafka, kafka, pytest  # noqa: F401  (importable, C extension loads)
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    if version(name) != want:
        sys.exit(1)
PYEOF
}

if ! py_pkgs_ok; then
  log "pip install ${PY_PKGS[*]}"
  quiet "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  quiet "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PY_PKGS[@]}"
  py_pkgs_ok || { log "python packages still missing after pip install: ${PY_PKGS[*]}"; exit 1; }
fi

# --- kafkajs (Node.js client) in tests/e2e/js/node_modules, pinned by package.json
KAFKAJS_VERSION=2.2.4
JS_DIR="$ROOT/tests/e2e/js"
kafkajs_ok() {
  [ "$(node -p "require('$JS_DIR/node_modules/kafkajs/package.json').version" 2>/dev/null)" = "$KAFKAJS_VERSION" ]
}
if ! command -v node >/dev/null 2>&1; then
  apt_install nodejs npm
fi
if ! kafkajs_ok; then
  log "npm install kafkajs@$KAFKAJS_VERSION"
  quiet npm install --prefix "$JS_DIR" --no-audit --no-fund --no-save "kafkajs@$KAFKAJS_VERSION"
  kafkajs_ok || { log "kafkajs still missing after npm install"; exit 1; }
fi

# --- Apache Kafka (broker + command-line tools, pinned in ci/kafka.sh) from Maven Central: a tool
# of the tests (test_kafka_tools.py), cached under target/kafka/<version>/. Needs Java 17 and Maven.
if ! command -v java >/dev/null 2>&1; then
  apt_install openjdk-17-jre-headless
fi
if ! command -v mvn >/dev/null 2>&1; then
  apt_install maven
fi
if ! ./ci/kafka.sh resolve; then
  log "FAILED: ci/kafka.sh resolve (Apache Kafka from Maven Central)"
  exit 1
fi
# --- the Java client driver: tests/java (pom pins org.apache.kafka:kafka-clients), built into
# target/java/ with Maven's local repository in target/m2/ (CI caches target/). A test tool
# only: nothing of it is committed or linked into skein. Rebuilt when the pom or a source
# changes (a hash of them is kept beside the jar) or a jar on its classpath is gone.
JAVA_SRC="$ROOT/tests/java"
JAVA_OUT="$ROOT/target/java"
java_src_hash() {
  (cd "$JAVA_SRC" && find pom.xml src -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -d' ' -f1
}
java_ok() {
  [ -f "$JAVA_OUT/skein-java-e2e.jar" ] && [ -f "$JAVA_OUT/classpath.txt" ] && [ -f "$JAVA_OUT/source-hash" ] || return 1
  [ "$(cat "$JAVA_OUT/source-hash")" = "$(java_src_hash)" ] || return 1
  local jar
  for jar in $(tr ':' ' ' <"$JAVA_OUT/classpath.txt"); do
    [ -f "$jar" ] || return 1
  done
}
if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
  apt_install default-jdk-headless maven
fi
if ! java_ok; then
  log "mvn package (tests/java, the Java client driver)"
  rm -f "$JAVA_OUT/source-hash"
  quiet mvn -q -B -f "$JAVA_SRC/pom.xml" -Dmaven.repo.local="$ROOT/target/m2" \
    package dependency:build-classpath -Dmdep.outputFile="$JAVA_OUT/classpath.txt"
  java_src_hash >"$JAVA_OUT/source-hash"
  java_ok || { log "the Java client driver is still missing after mvn package"; exit 1; }
fi

# --- franz-go (Go client: kgo and kadm, pinned by tests/go/go.mod and go.sum) built into
# target/go/franzgo for test_franz_go.py. Modules and build cache live under target/go/ (CI caches
# target/); `go build` is incremental, so a second run takes about a second. franz-go 1.22 needs
# Go 1.26 or newer (Debian's golang-go is too old): install it from https://go.dev/dl.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
  log "FAILED: go is not installed (franz-go needs Go 1.26+: https://go.dev/dl)"
  exit 1
fi
GO_BUILD_ENV=(env GOMODCACHE="$ROOT/target/go/mod" GOCACHE="$ROOT/target/go/cache"
  GOFLAGS=-mod=readonly GOTOOLCHAIN=local CGO_ENABLED=0)
if ! (cd tests/go && quiet "${GO_BUILD_ENV[@]}" go build -o "$ROOT/target/go/franzgo" .); then
  log "FAILED: go build in tests/go (franz-go from the Go module proxy)"
  exit 1
fi
[ -x "$ROOT/target/go/franzgo" ] || { log "target/go/franzgo missing after go build"; exit 1; }

exit 0
