#!/usr/bin/env bash
# Does refreshing a large CRL slow down handshakes? certgate with a 100,000-entry CRL fetched
# from a URL and replaced every second, against certgate with the same CRL as a file that never
# changes, same machine, same run.
#
#   bash bench/crl_refresh.sh [SECONDS] [ROUNDS] [ENTRIES]
#
# The lists are served in DER, as RFC 5280 §4.2.1.13 has distribution points serve them (and as
# certgate's own `/ca.crl` does); FORMAT=pem serves the PEM files instead (5.4 MB of base64 to
# decode per refresh of a 100,000-entry list).
#
# Both certgate processes are pinned to core 0; nginx (serving the CRLs), the publisher and the
# load generator to core 1. TLS 1.3, ECDSA P-256, client certificate required and verified, no
# resumption; the built-in echo upstream, so only the gateway's own work is measured. Rounds
# alternate between the two; the publisher puts a new CRL (higher CRL number) in place every
# second during the refreshing server's rounds, and a decoy does the same work on core 1 during
# the static server's (so both see the same load generator). First, without load, it prints
# what one refresh costs certgate in CPU. Prints each round and the median ratio
# refreshing/static. With PERF=1, the refreshing server
# runs under `perf record` and the hottest symbols are printed (where the refresh costs go).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ROUNDS=${2:-3}
ENTRIES=${3:-100000}
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; }
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time; }

cargo build --release -q -p certgate -p certgate-bench
CG=$PWD/target/release/certgate
if [ "${PERF:-0}" = 1 ]; then  # line tables, so the profile names functions
  cargo build --profile profiling -q -p certgate
  CG=$PWD/target/profiling/certgate
fi
LOAD=$PWD/target/release/certgate-loadgen
W=$(mktemp -d /tmp/certgate-crl-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
cd "$W"

$CG ca init --dir ca >/dev/null
$CG ca issue --dir ca --server localhost --ip 127.0.0.1 --out server >/dev/null
$CG ca issue --dir ca --client loadgen --out client >/dev/null
# ENTRIES revoked certificates in the CA's index (random serials), then one CRL per second of
# refreshing rounds, each with the next CRL number.
python3 - "$ENTRIES" >> ca/index.tsv <<'PY'
import os, sys
for _ in range(int(sys.argv[1])):
    print(f"R\t{os.urandom(16).hex()}\t2030-01-01T00:00:00Z\t2026-01-01T00:00:00Z\tsuperseded\tclient\tCN=gone")
PY
mkdir -p www crls
N=$(( ROUNDS * (SECS + 4) + 24 ))
FORMAT=${FORMAT:-der}
for i in $(seq 1 "$N"); do
  $CG ca crl --dir ca --out "crls/$i.crl" --days 7 >/dev/null
  if [ "$FORMAT" = der ]; then
    openssl crl -in "crls/$i.crl" -outform DER -out crls/der && mv crls/der "crls/$i.crl"
  fi
done
cp crls/1.crl static.crl
cp crls/1.crl www/ca.crl
echo "CRL: $ENTRIES entries, $(stat -c %s static.crl) bytes ($FORMAT); $N generated"

HTTP=18480 REF=18443 STA=18444
cat > nginx.conf <<NGINX
user root;
worker_processes 1;
pid $W/nginx.pid;
error_log $W/nginx-error.log;
events { worker_connections 256; }
http {
  access_log off;
  server { listen 127.0.0.1:$HTTP; root $W/www; }
}
NGINX
config() { # name port trust-lines
  cat <<TOML
version = 1
state_dir = "state-$1"
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["ca/ca.pem"]
$3
[[ingress]]
name = "bench"
listen = "127.0.0.1:$2"
identity = "server"
client_auth = "require_and_verify"
trust = "clients"
min_tls = "1.3"
forward = []
x_forwarded = false
max_connections = 30000
  [[ingress.route]]
  upstream = "echo"
TOML
}
config refreshing $REF "crl_url = [\"http://127.0.0.1:$HTTP/ca.crl\"]
crl_refresh_secs = 1" > refreshing.toml
config static $STA 'crl = ["static.crl"]' > static.toml

taskset -c 1 nginx -p "$W" -c "$W/nginx.conf" -g 'daemon off;' &
PERF_CMD=()
[ "${PERF:-0}" = 1 ] && PERF_CMD=(perf record -q -F 499 -g -o "$W/perf.data" --)
CERTGATE_LOG=warn,certgate::cmd::serve::crls=info taskset -c 0 "${PERF_CMD[@]}" $CG serve --config refreshing.toml > refreshing.out 2> refreshing.err &
CERTGATE_LOG=warn,certgate::cmd::serve::crls=info taskset -c 0 $CG serve --config static.toml > static.out 2> static.err &
sleep 3
# The load generator skips verifying the server (its CPU goes to its own share of each
# handshake), and its CPU share is printed with each round's, to show what limits the run.
load() { /usr/bin/time -f "%P" -o "$W/load.cpu" taskset -c 1 $LOAD --addr "127.0.0.1:$1" --ca ca/ca.pem --cert client.pem --key client.key --no-verify-server "${@:2}"; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# The refreshing server answers once its first fetch is in.
for _ in $(seq 1 30); do load $REF --mode handshake --connections 1 --duration 1 >/dev/null 2>&1 && break; sleep 1; done

NEXT=2
# The static server's rounds get the same work on core 1 as the refreshing server's (a 5 MB
# copy and nginx sending the list once a second, here to curl), so the load generator on core
# 1 is slowed alike and only certgate's own refreshing differs between the two.
decoy() {
  while true; do
    cp crls/1.crl www/.decoy.tmp && mv www/.decoy.tmp www/decoy.crl
    curl -s -o /dev/null "http://127.0.0.1:$HTTP/decoy.crl"
    sleep 1
  done
}
publisher() { # puts crls/NEXT.. in place once a second until killed
  local i=$NEXT
  while [ -f "crls/$i.crl" ]; do
    cp "crls/$i.crl" www/.ca.crl.tmp && mv www/.ca.crl.tmp www/ca.crl
    i=$((i + 1)); echo $i > next
    sleep 1
  done
}
# What one refresh costs certgate, without load: CPU over 20 s of one new list per second.
taskset -c 1 bash -c "$(declare -f publisher); NEXT=$NEXT; publisher" &
PUB=$!
sleep 2
RPID=$(pgrep -f "serve --config refreshing.toml" | tail -1)
n0=$(grep -c '"new CRL in force' refreshing.err || true); c0=$(cpu_ticks "$RPID")
sleep 20
n1=$(grep -c '"new CRL in force' refreshing.err || true); c1=$(cpu_ticks "$RPID")
kill $PUB 2>/dev/null || true; wait $PUB 2>/dev/null || true; NEXT=$(cat next)
python3 -c "import sys; t, n = int(sys.argv[1]) * 10, int(sys.argv[2]); print(f'idle: {n} lists put in force in 20 s, certgate used {t} ms of CPU: {t / max(n, 1):.1f} ms per refresh ({t / 200:.1f}% of a core)')" $((c1 - c0)) $((n1 - n0))
: > rounds.txt
for target in refreshing static; do
  if [ $target = refreshing ]; then PORT=$REF; else PORT=$STA; fi
  load $PORT --mode handshake --connections 16 --duration 2 >/dev/null   # warm-up
done
for round in $(seq 1 "$ROUNDS"); do
  for target in refreshing static; do
    if [ $target = refreshing ]; then
      PORT=$REF
      taskset -c 1 bash -c "$(declare -f publisher); NEXT=$NEXT; publisher" &
      PUB=$!
    else
      PORT=$STA
      HTTP=$HTTP taskset -c 1 bash -c "$(declare -f decoy); HTTP=$HTTP; decoy" &
      PUB=$!
    fi
    SPID=$(pgrep -f "serve --config $target.toml" | tail -1)
    c0=$(cpu_ticks "$SPID")
    hs=$(load $PORT --mode handshake --connections 16 --duration "$SECS")
    c1=$(cpu_ticks "$SPID")
    kill $PUB 2>/dev/null || true; wait $PUB 2>/dev/null || true
    if [ $target = refreshing ]; then NEXT=$(cat next); fi
    echo "$target round=$round $hs" | tee -a rounds.txt
    echo "  cpu: certgate $(( (c1 - c0) / SECS ))% of core 0, load generator $(cat "$W/load.cpu") of core 1"
  done
done
new=$(grep -c '"new CRL in force' refreshing.err || true)
refused=$(grep -c 'CRL not refreshed' refreshing.err || true)
echo "refreshing server: $new new CRLs stored and applied, $refused refreshes failed or refused"
grep -m 3 'CRL not refreshed' refreshing.err || true
python3 - <<'PY'
import json, re, statistics
rows = {}
for line in open("rounds.txt"):
    target = line.split()[0]
    rows.setdefault(target, []).append(json.loads(line[line.index("{"):])["rps"])
r, s = statistics.median(rows["refreshing"]), statistics.median(rows["static"])
print(f"handshakes/s, median of {len(rows['static'])} alternating rounds: refreshing {r:.0f}, static {s:.0f}, ratio {r/s:.3f}")
print("rounds: refreshing " + ", ".join(f"{x:.0f}" for x in rows["refreshing"]) + "; static " + ", ".join(f"{x:.0f}" for x in rows["static"]))
PY
if [ "${PERF:-0}" = 1 ]; then
  pkill -INT -f "perf record" || true
  sleep 2
  perf report -i "$W/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -25
fi
