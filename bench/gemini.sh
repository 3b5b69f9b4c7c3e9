#!/usr/bin/env bash
# Gemini: certgate vs molly-brown and Jetforce, one core each, in one run.
#
#   bash bench/gemini.sh [SECONDS] [IDLE_CONNECTIONS] [ROUNDS]
#
# Installs the peers (Debian's molly-brown and nginx-light, PyPI's jetforce) if they are missing,
# builds certgate and certgate-loadgen, then runs bench/gemini.py (see it for the set-up).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
IDLE=${2:-2000}
ROUNDS=${3:-3}
missing=()
for tool in molly-brown:molly-brown nginx:nginx-light taskset:util-linux; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
command -v jetforce >/dev/null || python3 -m pip install --quiet jetforce
ulimit -n "$(ulimit -Hn)" || true
cargo build --release -q -p certgate -p certgate-bench
exec python3 bench/gemini.py --seconds "$SECS" --idle "$IDLE" --rounds "$ROUNDS"
