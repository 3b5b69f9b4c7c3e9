#!/usr/bin/env bash
# What the content-trust gate costs a download: the same file (default 1024 MiB) through
# certgate's egress proxy (CONNECT, intercepted) once on a URL the gate checks and once on a URL
# it does not, alternating rounds, same run; and how long the verdict takes at the end of a
# download (certgate_egress_trust_verdict_seconds, with the log synced).
#
#   bash bench/trust_gate.sh [MIB] [ROUNDS]
#
# nginx serves the file (core 0) and the load generator downloads it (core 1); certgate may run
# on both cores, as it would in a deployment, so the gate's SHA-256 (on a thread of its own) can
# overlap the transfer; the log is a second certgate serve. CORES=1 pins certgate to core 1 with
# the load generator instead (no core to spare: the hash then costs its full CPU time). Prints each round, the median MiB/s of each and their ratio, and the
# verdict times.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
ROUNDS=${2:-3}
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; }
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }

cargo build --release -q -p certgate -p certgate-bench
CG=$PWD/target/release/certgate
LOAD=$PWD/target/release/certgate-loadgen
W=$(mktemp -d /dev/shm/certgate-gate-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
cd "$W"

UP=19543 PROXY=13228 LOG=18544 ADMIN=19902
$CG ca init --dir ca >/dev/null
$CG ca issue --dir ca --server localhost --ip 127.0.0.1 --out server >/dev/null
$CG ca issue --dir ca --client publisher --out publisher >/dev/null
$CG ca issue --dir ca --client app --out app >/dev/null
mkdir -p www/gated www/plain
head -c "${MIB}M" /dev/urandom > www/gated/big
ln www/gated/big www/plain/big

# The log, the publisher's key, the file signed, and the verifier's policy.
$CG log init --origin bench.example/log --dir logdata >/dev/null
cat > log.toml <<TOML
version = 1
state_dir = "log-state"
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "writers"
ca = ["ca/ca.pem"]
[log]
origin = "bench.example/log"
data_dir = "logdata"
listen = "127.0.0.1:$LOG"
identity = "server"
trust = "writers"
writers = [{ cn = "publisher" }]
TOML
CERTGATE_LOG=error $CG serve --config log.toml > log.out 2>&1 &
sleep 1
$CG trust keygen --name bench.example/publisher --out pub.key >/dev/null
$CG trust sign www/gated/big --name big --key pub.key --log "https://localhost:$LOG" \
  --ca ca/ca.pem --tls-cert publisher.pem --tls-key publisher.key >/dev/null
cat > policy.toml <<TOML
version = 1
log_keys = ["$(cat logdata/log.vkey)"]
log_url = "https://localhost:$LOG"
[[signer]]
key = "$(cat pub.key.pub)"
names = ["*"]
TOML

cat > nginx.conf <<NGINX
user root;
worker_processes 1;
pid $W/nginx.pid;
error_log $W/nginx-error.log;
events { worker_connections 256; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$UP ssl;
    ssl_certificate $W/server.pem;
    ssl_certificate_key $W/server.key;
    ssl_protocols TLSv1.3;
    root $W/www;
  }
}
NGINX
cat > egress.toml <<TOML
version = 1
state_dir = "egress-state"
[[trust]]
name = "servers"
ca = ["ca/ca.pem"]
[admin]
listen = "127.0.0.1:$ADMIN"
[egress]
listen = "127.0.0.1:$PROXY"
intercept_ca = "egress-ca"
  [[egress.rule]]
  name = "files"
  url = "https://localhost:$UP/"
  trust = "servers"
  trust_policy = "policy.toml"
  trust_log_ca = ["ca/ca.pem"]
  verify = ["https://localhost:$UP/gated/*"]
TOML
$CG egress ca --dir egress-ca --config egress.toml >/dev/null

taskset -c 0 nginx -p "$W" -c "$W/nginx.conf" -g 'daemon off;' &
if [ "${CORES:-2}" = 1 ]; then CG_CPUS=1; else CG_CPUS=0,1; fi
CERTGATE_LOG=warn taskset -c "$CG_CPUS" $CG serve --config egress.toml > egress.out 2>&1 &
sleep 3

download() { # path
  taskset -c 1 $LOAD --addr "127.0.0.1:$UP" --sni localhost --ca ca/ca.pem --cert app.pem --key app.key \
    --mode download --path "$1" --via proxy-connect --proxy "127.0.0.1:$PROXY" --proxy-ca egress-ca/ca.pem
}
: > rounds.txt
for round in $(seq 1 "$ROUNDS"); do
  for which in gated plain; do
    out=$(download "/$which/big")
    echo "$which round=$round $out" | tee -a rounds.txt
  done
done
curl -s "http://127.0.0.1:$ADMIN/metrics" | grep -E '^certgate_egress_trust_verdict(s_total|_seconds)' > verdicts.txt || true
python3 - <<'PY'
import json, statistics
rows = {}
for line in open("rounds.txt"):
    which = line.split()[0]
    rows.setdefault(which, []).append(json.loads(line[line.index("{"):])["mib_per_s"])
g, p = statistics.median(rows["gated"]), statistics.median(rows["plain"])
print(f"MiB/s, median of {len(rows['gated'])} alternating rounds: gated {g:.0f}, not gated {p:.0f}, ratio {g/p:.3f}")
print("rounds: gated " + ", ".join(f"{x:.0f}" for x in rows["gated"]) + "; not gated " + ", ".join(f"{x:.0f}" for x in rows["plain"]))
total = count = 0.0
for line in open("verdicts.txt"):
    name, value = line.rsplit(" ", 1)
    if name.startswith("certgate_egress_trust_verdict_seconds_sum"):
        total = float(value)
    if name.startswith("certgate_egress_trust_verdict_seconds_count"):
        count = float(value)
    if name.startswith("certgate_egress_trust_verdicts_total"):
        print("verdicts:", name.split("{", 1)[1].rstrip("}"), value.strip())
if count:
    print(f"verdict at the end of a download: mean {total / count * 1000:.2f} ms over {count:.0f} downloads")
PY
