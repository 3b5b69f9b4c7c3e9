#!/usr/bin/env bash
# Durable appends/s to the transparency log over HTTPS: 64 keep-alive mTLS writers POSTing
# unique 256-byte entries to /add, end to end (TLS, the log's route, the sequencer, a durable
# commit), against the embedded store and against PostgreSQL on this machine; then inclusion-
# proof reads (full tiles) from one instance.
#
#   bash bench/log_append.sh [SECONDS]
#
# certgate is pinned to core 0, the load generator to core 1; PostgreSQL (a cluster of its own
# in a temporary directory, fsync on) may use both. Prints one JSON line per measure.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL is required: apt-get install postgresql" >&2; exit 1; }

cargo build --release -q -p certgate -p certgate-bench
CG=$PWD/target/release/certgate
LOAD=$PWD/target/release/certgate-loadgen
W=$(mktemp -d /tmp/certgate-log-bench.XXXXXX)
chmod 755 "$W"
AS=()
[ "$(id -u)" = 0 ] && AS=(runuser -u postgres --)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  [ -d "$W/pg" ] && "${AS[@]}" "$PGBIN/pg_ctl" -D "$W/pg/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
cd "$W"

$CG ca init --dir ca >/dev/null
$CG ca issue --dir ca --server localhost --ip 127.0.0.1 --out server >/dev/null
$CG ca issue --dir ca --client publisher --out writer >/dev/null
PGPORT=15432 LOGPORT=18444
mkdir pg && [ "$(id -u)" = 0 ] && chown postgres: pg
"${AS[@]}" "$PGBIN/initdb" -D "$W/pg/data" -A trust -U postgres >/dev/null
"${AS[@]}" "$PGBIN/pg_ctl" -D "$W/pg/data" -o "-p $PGPORT -k $W/pg -c listen_addresses=127.0.0.1" \
  -l "$W/pg/log" -w start >/dev/null

config() { # storage-lines
  cat <<TOML
version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "writers"
ca = ["ca/ca.pem"]
[log]
origin = "bench.example/log"
data_dir = "data-$1"
listen = "127.0.0.1:$LOGPORT"
identity = "server"
trust = "writers"
writers = [{ cn = "publisher" }]
$2
TOML
}
load() { taskset -c 1 $LOAD --addr "127.0.0.1:$LOGPORT" --ca ca/ca.pem --cert writer.pem --key writer.key "$@"; }
for storage in embedded postgres; do
  $CG log init --origin bench.example/log --dir "data-$storage" >/dev/null
  if [ $storage = postgres ]; then
    config $storage "storage = \"postgres\"
postgres_url = \"postgres://postgres@127.0.0.1:$PGPORT/postgres\"" > $storage.toml
  else
    config $storage "" > $storage.toml
  fi
  CERTGATE_LOG=warn taskset -c 0 $CG serve --config $storage.toml > $storage.out 2> $storage.err &
  PID=$!
  for _ in $(seq 1 50); do grep -q listening $storage.out 2>/dev/null && break; sleep 0.2; done
  echo "$storage append $(load --mode append --path /add --connections 64 --duration "$SECS")"
  # Inclusion-proof reads: the first full hash tile, which every proof for its leaves uses.
  echo "$storage read-tile $(load --mode keepalive --path /tile/0/000 --connections 64 --duration "$SECS")"
  kill $PID; wait $PID 2>/dev/null || true
done
