#!/usr/bin/env bash
# certgate vs nginx, HAProxy and Caddy, same certificates, same load generator, one run.
#
#   bash bench/run.sh [SECONDS] [IDLE_CONNECTIONS] [ROUNDS]
#
# Installs the peers (Debian's nginx-light, haproxy, caddy, nghttp2-client for h2load, strace) if they
# are missing, builds certgate and certgate-loadgen, then runs bench/compare.py, which writes
# docs/benchmarks.md and its plots under docs/benchmarks/ (see that script for the set-up).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
IDLE=${2:-9900}
ROUNDS=${3:-3}
missing=()
for tool in nginx:nginx-light haproxy:haproxy caddy:caddy h2load:nghttp2-client strace:strace taskset:util-linux; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
# Every server and the load generator may hold IDLE connections at once.
ulimit -n "$(ulimit -Hn)" || true
cargo build --release -q -p certgate -p certgate-bench
exec python3 bench/compare.py --seconds "$SECS" --idle "$IDLE" --rounds "$ROUNDS"
