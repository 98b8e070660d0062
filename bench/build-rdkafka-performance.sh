#!/usr/bin/env bash
# Builds librdkafka's own load generator, rdkafka_performance, from a pinned librdkafka source
# release, and bench/rate_producer.c against the same library, and prints rdkafka_performance's
# path (rate_producer sits beside it). The source is the librdkafka tree vendored in the
# rdkafka-sys crate on crates.io (a registry this machine reaches; github.com it does not),
# checked against the crate index's sha256. Nothing of it is committed: it is downloaded
# and built under target/bench-tools/ on first use, in about two minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
# rdkafka-sys 4.10.0 vendors librdkafka 2.12.1.
CRATE="rdkafka-sys-4.10.0+2.12.1"
SHA256="e234cf318915c1059d4921ef7f75616b5219b10b46e9f3a511a15eb4b56a3f77"
TOOLS="${SKEIN_BENCH_TOOLS:-$ROOT/target/bench-tools}"
BIN="$TOOLS/rdkafka_performance"

RATE="$TOOLS/rate_producer"
# bench/rate_producer.c (skein's own rate-limited producer) links the same static librdkafka.
build_rate_producer() {
  local src="$TOOLS/src/librdkafka"
  local libs
  libs="$(sed -n 's/^LIBS+=//p' "$src/Makefile.config" | tr '\n' ' ')"
  # shellcheck disable=SC2086
  cc -O2 -Wall -Werror -o "$RATE" "$ROOT/bench/rate_producer.c" -I"$src/src" \
    "$src/src/librdkafka.a" $libs
}
if [ -x "$BIN" ]; then
  if [ ! -x "$RATE" ] || [ "$ROOT/bench/rate_producer.c" -nt "$RATE" ]; then
    build_rate_producer
  fi
  echo "$BIN"
  exit 0
fi
log() { echo "[bench/build-rdkafka-performance] $*" >&2; }
mkdir -p "$TOOLS"
cd "$TOOLS"
if [ ! -f "$CRATE.crate" ]; then
  log "downloading $CRATE from static.crates.io"
  curl -fsSL -o "$CRATE.crate.part" "https://static.crates.io/crates/rdkafka-sys/${CRATE/+/%2B}.crate"
  mv "$CRATE.crate.part" "$CRATE.crate"
fi
echo "$SHA256  $CRATE.crate" | sha256sum -c --quiet - || {
  log "checksum mismatch for $CRATE.crate; delete it and retry"
  exit 1
}
rm -rf src && mkdir src
tar -xzf "$CRATE.crate" -C src --strip-components=1
cd src/librdkafka
log "configure + make (librdkafka static library and examples/rdkafka_performance)"
LOG="$TOOLS/build.log"
{
  ./configure --disable-ssl --disable-gssapi --disable-sasl --disable-curl \
    && make -j"$(nproc)" libs \
    && make -C examples rdkafka_performance
} >"$LOG" 2>&1 || {
  log "build failed; last lines of $LOG:"
  tail -30 "$LOG" >&2
  exit 1
}
cp examples/rdkafka_performance "$BIN"
build_rate_producer
echo "$BIN"
