#!/usr/bin/env bash
# Content trust: verifying a large file (hashing dominates) against sha256sum on the same file,
# same run; plus the criterion figures for bundle verification.
#
#   bash bench/trust.sh [MIB]
#
# Uses `certgate quickstart` for a local log, signs a MIB-sized file (default 1024) and times
# `certgate trust verify --offline` and `sha256sum` on it, best of 3 each (file in /dev/shm, so
# the page cache is warm for both).
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
cargo build --release -q -p certgate
CG=$PWD/target/release/certgate
W=$(mktemp -d /dev/shm/certgate-trust-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
cd "$W"
$CG quickstart --dir qs --listen 127.0.0.1:0 > qs.out 2>&1 &
for _ in $(seq 1 100); do grep -q "Transparency log running on" qs.out && break; sleep 0.1; done
URL=$(grep -o "Transparency log running on https://localhost:[0-9]*" qs.out | awk '{print $5}')
head -c "${MIB}M" /dev/urandom > big
$CG trust sign big --name quickstart-big --key qs/publisher.key --log "$URL" --ca qs/ca/ca.pem \
  --tls-cert qs/client.pem --tls-key qs/client.key > /dev/null
# The verdict being timed (must be TRUSTED, exit 0).
$CG trust verify big --offline --policy qs/trust-policy.toml | head -1
best() { python3 -c "import sys; print(min(float(x) for x in sys.argv[1:]))" "$@"; }
t() { local s e; s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N); python3 -c "print($e - $s)"; }
V=(); S=()
for _ in 1 2 3; do
  V+=("$(t $CG trust verify big --offline --policy qs/trust-policy.toml)")
  S+=("$(t sha256sum big)")
done
BV=$(best "${V[@]}"); BS=$(best "${S[@]}")
echo "| measure | certgate trust verify --offline | sha256sum | speed ratio |"
echo "|---|---|---|---|"
python3 -c "print(f'| ${MIB} MiB file (s, best of 3) | {float($BV):.3f} | {float($BS):.3f} | {float($BS)/float($BV):.2f}x |')"
