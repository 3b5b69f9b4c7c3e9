#!/usr/bin/env bash
# certgate vs nginx, same certificates, same load generator, same run.
#
#   bash bench/run.sh [SECONDS] [IDLE_CONNECTIONS] [ROUNDS]
#
# Servers are pinned to core 0 (nginx with one worker), the load generator and the shared plain
# HTTP upstream (an nginx `return 200`) to core 1. TLS 1.3, ECDSA P-256 certificates, X25519 only,
# client certificate required and verified by both servers, no session resumption.
# Prints JSON lines per measurement and a summary table with certgate/nginx ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
IDLE=${2:-10000}
ROUNDS=${3:-3}
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; }
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" || true

cargo build --release -q -p certgate -p certgate-bench
CG=$PWD/target/release/certgate
LOAD=$PWD/target/release/certgate-loadgen
W=$(mktemp -d /tmp/certgate-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
cd "$W"

$CG ca init --dir ca >/dev/null
$CG ca issue --dir ca --server localhost --ip 127.0.0.1 --out server >/dev/null
$CG ca issue --dir ca --client loadgen --out client >/dev/null

UP=18080 CGP=18443 NGP=18444
cat > upstream.conf <<NGINX
worker_processes 1;
pid $W/upstream.pid;
error_log $W/upstream-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:$UP; keepalive_requests 1000000; location / { return 200 "ok"; } }
}
NGINX
cat > nginx.conf <<NGINX
worker_processes 1;
pid $W/nginx.pid;
error_log $W/nginx-error.log;
events { worker_connections 30000; }
http {
  access_log off;
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NGP ssl;
    ssl_certificate $W/server.pem;
    ssl_certificate_key $W/server.key;
    ssl_client_certificate $W/ca/ca.pem;
    ssl_verify_client on;
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519;
    ssl_session_cache off;
    ssl_session_tickets off;
    keepalive_requests 1000000;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
cat > certgate.toml <<TOML
version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["ca/ca.pem"]
[[ingress]]
name = "bench"
listen = "127.0.0.1:$CGP"
identity = "server"
client_auth = "require_and_verify"
trust = "clients"
min_tls = "1.3"
forward = []
x_forwarded = false
max_connections = 30000
  [[ingress.route]]
  upstream = "http://127.0.0.1:$UP"
TOML

taskset -c 1 nginx -p "$W" -c "$W/upstream.conf" -g 'daemon off;' &
taskset -c 0 nginx -p "$W" -c "$W/nginx.conf" -g 'daemon off;' &
CERTGATE_LOG=error taskset -c 0 $CG serve --config certgate.toml > serve.out &
CG_PID=$!
sleep 2
kill -0 $CG_PID 2>/dev/null || { echo "certgate did not start" >&2; exit 1; }
NG_WORKER=$(pgrep -P "$(cat nginx.pid)" | head -1)
[ -n "$NG_WORKER" ] || { echo "nginx did not start" >&2; exit 1; }

load() { taskset -c 1 $LOAD --addr "127.0.0.1:$1" --ca ca/ca.pem --cert client.pem --key client.key "${@:2}"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# Throughput rounds alternate between the servers so that drift on a shared machine hits both;
# each figure is the median over the rounds (latency: the median round's percentiles).
declare -A R
: > rounds.jsonl
for target in certgate nginx; do
  if [ $target = certgate ]; then PORT=$CGP; else PORT=$NGP; fi
  load $PORT --mode keepalive --connections 8 --duration 2 >/dev/null   # warm-up
done
for round in $(seq 1 "$ROUNDS"); do
  for target in certgate nginx; do
    if [ $target = certgate ]; then PORT=$CGP; else PORT=$NGP; fi
    hs=$(load $PORT --mode handshake --connections 16 --duration "$SECS"); echo "$target round=$round $hs"
    ka=$(load $PORT --mode keepalive --connections 64 --duration "$SECS"); echo "$target round=$round $ka"
    echo "{\"target\": \"$target\", \"hs\": $hs, \"ka\": $ka}" >> rounds.jsonl
  done
done
for target in certgate nginx; do
  read -r R[$target.hs] R[$target.ka] R[$target.p50] R[$target.p99] < <(python3 - "$target" <<'PY'
import json, statistics, sys
rows = [r for r in map(json.loads, open("rounds.jsonl")) if r["target"] == sys.argv[1]]
hs = statistics.median(r["hs"]["rps"] for r in rows)
ka = sorted(rows, key=lambda r: r["ka"]["rps"])[len(rows) // 2]["ka"]
print(round(hs), round(ka["rps"]), ka["p50_us"], ka["p99_us"])
PY
)
done
for target in certgate nginx; do
  if [ $target = certgate ]; then PORT=$CGP; PID=$CG_PID; else PORT=$NGP; PID=$NG_WORKER; fi
  before=$(rss_kib "$PID")
  load $PORT --mode idle --connections "$IDLE" --duration 20 > idle.out &
  LP=$!
  for _ in $(seq 1 120); do [ -s idle.out ] && break; sleep 0.5; done
  sleep 1
  after=$(rss_kib "$PID")
  echo "$target $(cat idle.out) rss_before_kib=$before rss_after_kib=$after"
  kill $LP 2>/dev/null || true; wait $LP 2>/dev/null || true; rm -f idle.out
  R[$target.idle]=$(( (after - before) * 1024 / IDLE ))
  sleep 2
done

ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }
echo
echo "Throughput: median of $ROUNDS alternating rounds of $SECS s; latency from the median round."
echo
echo "| measure | certgate | nginx | certgate/nginx |"
echo "|---|---|---|---|"
echo "| full mTLS handshakes/s (new connection per request) | ${R[certgate.hs]} | ${R[nginx.hs]} | $(ratio ${R[certgate.hs]} ${R[nginx.hs]}) |"
echo "| keep-alive req/s, 64 connections | ${R[certgate.ka]} | ${R[nginx.ka]} | $(ratio ${R[certgate.ka]} ${R[nginx.ka]}) |"
echo "| keep-alive p50 / p99 latency (µs) | ${R[certgate.p50]} / ${R[certgate.p99]} | ${R[nginx.p50]} / ${R[nginx.p99]} | |"
echo "| RSS per idle mTLS connection (bytes, $IDLE connections) | ${R[certgate.idle]} | ${R[nginx.idle]} | $(ratio ${R[certgate.idle]} ${R[nginx.idle]}) |"
