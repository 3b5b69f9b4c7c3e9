#!/usr/bin/env bash
# Egress overhead: certgate's forward proxy and tunnel vs a direct rustls mTLS client, same run.
#
#   bash bench/egress.sh [SECONDS] [MIB]
#
# Upstream: nginx (one worker, core 0), TLS 1.3, client certificate required and verified.
# certgate and the load generator share core 1. Measures:
#   - keep-alive request latency over one connection: direct mTLS vs through the proxy with TLS
#     origination (absolute-form http://) and with CONNECT interception; the overhead is the
#     difference of the p50s;
#   - one large download (default 1024 MiB): direct mTLS vs plain TCP into an egress tunnel.
# Prints JSON lines and a summary table.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
MIB=${2:-1024}
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; }
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }

cargo build --release -q -p certgate -p certgate-bench
CG=$PWD/target/release/certgate
LOAD=$PWD/target/release/certgate-loadgen
W=$(mktemp -d /dev/shm/certgate-egress-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
cd "$W"

$CG ca init --dir ca >/dev/null
$CG ca issue --dir ca --server localhost --ip 127.0.0.1 --out server >/dev/null
$CG ca issue --dir ca --client app --out client >/dev/null
$CG egress ca --dir egress-ca --host localhost >/dev/null
truncate -s "${MIB}M" big

UP=19443 PROXY=13128 TUN=19444
cat > nginx.conf <<NGINX
user root;
worker_processes 1;
pid $W/nginx.pid;
error_log $W/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$UP ssl;
    ssl_certificate $W/server.pem;
    ssl_certificate_key $W/server.key;
    ssl_client_certificate $W/ca/ca.pem;
    ssl_verify_client on;
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519;
    keepalive_requests 1000000;
    location = / { return 200 "ok"; }
    location = /big { alias $W/big; }
  }
}
NGINX
cat > egress.toml <<TOML
version = 1
[[identity]]
name = "app"
cert = "client.pem"
key = "client.key"
[[trust]]
name = "servers"
ca = ["ca/ca.pem"]
[egress]
listen = "127.0.0.1:$PROXY"
intercept_ca = "egress-ca"
  [[egress.rule]]
  name = "upstream"
  url = "https://localhost"
  identity = "app"
  trust = "servers"
  [[egress.tunnel]]
  name = "tunnel"
  listen = "127.0.0.1:$TUN"
  target = "127.0.0.1:$UP"
  sni = "localhost"
  identity = "app"
  trust = "servers"
TOML

taskset -c 0 nginx -p "$W" -c "$W/nginx.conf" -g 'daemon off;' &
CERTGATE_LOG=error taskset -c 1 $CG serve --config egress.toml > serve.out &
sleep 2

load() { taskset -c 1 $LOAD --addr "127.0.0.1:$UP" --ca ca/ca.pem --cert client.pem --key client.key "$@"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

load --mode keepalive --connections 1 --duration 2 >/dev/null   # warm-up
declare -A R
for via in direct proxy-origin proxy-connect; do
  out=$(load --mode keepalive --connections 1 --duration "$SECS" --via "$via" --proxy "127.0.0.1:$PROXY" --proxy-ca egress-ca/ca.pem)
  echo "latency $via $out"
  R[$via.p50]=$(echo "$out" | field p50_us)
  R[$via.p99]=$(echo "$out" | field p99_us)
done
for run in 1 2 3; do
  d=$(load --mode download --path /big --via direct); echo "download $d"
  t=$(taskset -c 1 $LOAD --addr "127.0.0.1:$TUN" --ca ca/ca.pem --cert client.pem --key client.key --mode download --path /big --via plain); echo "download $t"
  R[direct.mib.$run]=$(echo "$d" | field mib_per_s)
  R[tunnel.mib.$run]=$(echo "$t" | field mib_per_s)
done
best() { python3 -c "print(round(max($1, $2, $3)))"; }
DM=$(best "${R[direct.mib.1]}" "${R[direct.mib.2]}" "${R[direct.mib.3]}")
TM=$(best "${R[tunnel.mib.1]}" "${R[tunnel.mib.2]}" "${R[tunnel.mib.3]}")

echo
echo "| measure | direct mTLS | via certgate | overhead / ratio |"
echo "|---|---|---|---|"
echo "| keep-alive p50 / p99 (µs), proxy with TLS origination | ${R[direct.p50]} / ${R[direct.p99]} | ${R[proxy-origin.p50]} / ${R[proxy-origin.p99]} | +$(( ${R[proxy-origin.p50]} - ${R[direct.p50]} )) µs p50 |"
echo "| keep-alive p50 / p99 (µs), proxy with CONNECT interception | ${R[direct.p50]} / ${R[direct.p99]} | ${R[proxy-connect.p50]} / ${R[proxy-connect.p99]} | +$(( ${R[proxy-connect.p50]} - ${R[direct.p50]} )) µs p50 |"
echo "| ${MIB} MiB download (MiB/s, best of 3), tunnel | $DM | $TM | $(python3 -c "print(f'{$TM/$DM:.2f}x')") |"
