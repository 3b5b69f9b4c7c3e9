#!/usr/bin/env python3
"""Gemini: certgate against molly-brown and Jetforce, in one run, one core each.

    python3 bench/gemini.py [--seconds 5] [--rounds 3] [--idle 2000] [--out docs]

Run by `bench/gemini.sh`, which installs the peers and builds certgate and the load generator.

Every server listens with the same server certificate (ECDSA P-256), requests a client
certificate, and answers `gemini://localhost:PORT/` with the same small page. molly-brown and
Jetforce serve it as a static file; certgate answers through its HTTP upstream (an nginx `return
200`), since it is a gateway and serves no files itself. Servers run on core 0 (molly-brown with
GOMAXPROCS=1; Jetforce is one Python process), and so does certgate's upstream by default
(`--upstream-core 0`): each system gets one core for everything it runs. The load generator
(`certgate-loadgen --gemini`, a client certificate, full handshakes, server verification off so
its share of the crypto stays small) runs on core 1; with the upstream there too
(`--upstream-core 1`) core 1, not certgate, sets the pace, which the "core 1 busy" figure shows.

Measures, per server: requests/s, each a new connection with a full TLS 1.3 handshake and a
client certificate (Gemini has one request per connection, so this is also handshakes/s), with
p50/p99 latency; the same without a client certificate; RSS per idle connection (handshake done,
no request line yet) of a freshly started server. Rounds alternate between the servers; figures
are medians with the spread. Writes `OUT/benchmarks-gemini.md` and prints it.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import CERTGATE, LOADGEN, Bench, cpu_seconds, median_spread, rss_kib, sh  # noqa: E402

SERVERS = ["certgate", "molly-brown", "jetforce"]
PORTS = {"certgate": 19651, "molly-brown": 19652, "jetforce": 19653, "upstream": 19654}
PAGE = "# Hello\nA small static page.\n"


def core_busy(core):
    """(busy, total) jiffies of one core so far, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            v = [int(x) for x in line.split()[1:]]
            idle = v[3] + v[4]
            return sum(v) - idle, sum(v)
    raise RuntimeError(f"no cpu{core} in /proc/stat")


def peer_version(argv, fallback):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return fallback
    line = (done.stdout or done.stderr).strip().splitlines()
    return line[0] if line and done.returncode == 0 else fallback


class Gemini(Bench):
    """Servers and load, as `compare.Bench` (whose `spawn` and `stop` it uses) with its own set-up."""

    def setup(self):
        w = self.w
        page = PAGE.replace("\n", "\\n")
        sh(CERTGATE, "ca", "init", "--dir", w / "ca")
        sh(CERTGATE, "ca", "issue", "--dir", w / "ca", "--server", "localhost", "--ip", "127.0.0.1",
           "--out", w / "server")
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-nodes", "-days", "30", "-subj", "/CN=visitor", "-keyout", w / "me.key", "-out",
           w / "me.pem")
        (w / "docs").mkdir()
        (w / "docs/index.gmi").write_text(PAGE)
        (w / "upstream.conf").write_text(f"""
worker_processes 1;
pid {w}/upstream.pid;
error_log {w}/upstream-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{PORTS['upstream']};
    keepalive_requests 1000000;
    location / {{ default_type text/gemini; return 200 "{page}"; }}
  }}
}}
""")
        (w / "certgate.toml").write_text(f"""version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"

[[gemini]]
name = "capsule"
listen = "127.0.0.1:{PORTS['certgate']}"
identity = "server"
request_timeout_secs = 120
max_connections = 20000
  [[gemini.route]]
  path = "/"
  upstream = "http://127.0.0.1:{PORTS['upstream']}"
""")
        (w / "molly.conf").write_text(f"""Port = {PORTS['molly-brown']}
Hostname = "localhost"
CertPath = "{w}/server.pem"
KeyPath = "{w}/server.key"
DocBase = "{w}/docs/"
AccessLog = "/dev/null"
ErrorLog = "{w}/molly-error.log"
""")

    def start(self, name):
        w = self.w
        if name == "upstream":
            self.spawn(name, self.args.upstream_core, ["nginx", "-p", w, "-c", w / "upstream.conf", "-g", "daemon off;"])
        elif name == "certgate":
            self.spawn(name, 0, [CERTGATE, "serve", "--config", w / "certgate.toml"],
                       env={"CERTGATE_LOG": "error"})
        elif name == "molly-brown":
            self.spawn(name, 0, ["molly-brown", "-c", w / "molly.conf"], env={"GOMAXPROCS": "1"})
        elif name == "jetforce":
            self.spawn(name, 0, ["jetforce", "--host", "127.0.0.1", "--port", PORTS["jetforce"],
                                 "--hostname", "localhost", "--tls-certfile", w / "server.pem",
                                 "--tls-keyfile", w / "server.key", "--dir", w / "docs"])
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.procs[name].poll() is not None:
                raise SystemExit(f"{name} exited at start:\n{(w / f'{name}.out').read_text()}")
            if subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{PORTS[name]}"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"{name} did not listen on {PORTS[name]}")
        return self.procs[name].pid

    def load(self, name, *args, cert=True):
        auth = ["--cert", self.w / "me.pem", "--key", self.w / "me.key"]
        if not cert:
            auth.append("--no-client-cert")
        out = sh("taskset", "-c", "1", LOADGEN, "--addr", f"127.0.0.1:{PORTS[name]}", "--ca",
                 self.w / "ca/ca.pem", *auth, "--gemini", *args, timeout=600).stdout
        return json.loads(out.strip().splitlines()[-1])

    def rate(self, name, pid, secs, cert):
        t0, c0, k0 = time.time(), cpu_seconds(pid), core_busy(1)
        r = self.load(name, "--mode", "handshake", "--connections", self.args.connections,
                      "--duration", secs,
                      "--no-verify-server", cert=cert)
        r["server_cpu_share"] = (cpu_seconds(pid) - c0) / (time.time() - t0)
        k1 = core_busy(1)
        r["core1_busy"] = (k1[0] - k0[0]) / max(k1[1] - k0[1], 1)
        return r

    def idle(self, name):
        pid = self.start(name)
        self.load(name, "--mode", "handshake", "--connections", "2", "--duration", "1",
                  "--no-verify-server")
        time.sleep(1)
        before = rss_kib(pid)
        n = self.args.idle
        cmd = ["taskset", "-c", "1", LOADGEN, "--addr", f"127.0.0.1:{PORTS[name]}", "--ca",
               self.w / "ca/ca.pem", "--cert", self.w / "me.pem", "--key", self.w / "me.key",
               "--gemini", "--mode", "idle", "--connections", n, "--duration", "20",
               "--no-verify-server"]
        holder = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, text=True)
        line = holder.stdout.readline()
        time.sleep(1)
        after = rss_kib(pid)
        holder.kill()
        holder.wait()
        self.stop(name)
        opened = json.loads(line) if line else {"open": 0}
        return {"open": opened["open"], "bytes_per_conn": (after - before) * 1024 / max(opened["open"], 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    ap.add_argument("--upstream-core", type=int, default=0,
                    help="where certgate's upstream runs: 1 (with the load generator) or 0 (with certgate)")
    args = ap.parse_args()
    for tool in ("nginx", "molly-brown", "jetforce", "taskset", "openssl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (bench/gemini.sh installs it)")
    work = Path(tempfile.mkdtemp(prefix="certgate-gemini."))
    work.chmod(0o755)
    g = Gemini(work, args)
    try:
        g.setup()
        g.start("upstream")
        pids = {n: g.start(n) for n in SERVERS}
        secs = str(args.seconds)
        for n in SERVERS:  # warm-up, and a check that every server answers 20
            g.load(n, "--mode", "handshake", "--connections", "4", "--duration", "1",
                   "--no-verify-server")
        rounds = {n: {"cert": [], "none": []} for n in SERVERS}
        for r in range(1, args.rounds + 1):
            for n in SERVERS:
                with_cert = g.rate(n, pids[n], secs, True)
                without = g.rate(n, pids[n], secs, False)
                rounds[n]["cert"].append(with_cert)
                rounds[n]["none"].append(without)
                print(f"round {r} {n}: {with_cert['rps']:.0f} req/s with a certificate "
                      f"({with_cert['errors']} errors, server {with_cert['server_cpu_share']:.2f}, "
                      f"loadgen {with_cert['loadgen_cpu_share']:.2f}, core 1 busy {with_cert['core1_busy']:.2f}), "
                      f"{without['rps']:.0f} without",
                      file=sys.stderr, flush=True)
        for n in SERVERS:
            g.stop(n)
        idle = {n: g.idle(n) for n in SERVERS}
        med = {n: {k: dict(zip(("median", "min", "max"), median_spread([x["rps"] for x in v])))
                   for k, v in rounds[n].items()}
               for n in SERVERS}

        def fmt(m):
            return f"{m['median']:,.0f} ({m['min']:,.0f}-{m['max']:,.0f})"

        def lat(n, key):
            v = sorted(rounds[n]["cert"], key=lambda x: x["rps"])[len(rounds[n]["cert"]) // 2]
            return f"{v['p50_us']:,} / {v['p99_us']:,}"

        out = []
        out.append(f"{args.rounds} alternating rounds of {args.seconds} s, {args.connections} connections, one core per server; "
              f"idle: {args.idle} connections.\n")
        out.append("| measure | certgate | molly-brown | jetforce | certgate / molly-brown | certgate / jetforce |")
        out.append("|---|---|---|---|---|---|")
        for key, label in (("cert", "requests/s, client certificate (each a full handshake)"),
                           ("none", "requests/s, no client certificate")):
            c, m, j = (med[n][key]["median"] for n in SERVERS)
            out.append(f"| {label} | {' | '.join(fmt(med[n][key]) for n in SERVERS)} | {c / m:.2f}x | {c / j:.2f}x |")
        out.append(f"| p50 / p99 latency µs (client certificate) | {' | '.join(lat(n, 'cert') for n in SERVERS)} | | |")
        kib = {n: idle[n]["bytes_per_conn"] / 1024 for n in SERVERS}
        cells = " | ".join(f"{kib[n]:.1f} KiB ({idle[n]['open']:,} open)" for n in SERVERS)
        out.append(f"| RSS per idle connection | {cells} "
              f"| {kib['certgate'] / kib['molly-brown']:.2f}x | {kib['certgate'] / kib['jetforce']:.2f}x |")
        out.append("\nServer CPU per request (client certificate, median round): " + ", ".join(
            f"{n} {statistics.median(x['server_cpu_share'] / x['rps'] * 1e6 for x in rounds[n]['cert']):.0f} µs"
            for n in SERVERS) + "; core 1 (load generator, and certgate's upstream) busy: " + ", ".join(
            f"{n} {statistics.median(x['core1_busy'] for x in rounds[n]['cert']):.2f}" for n in SERVERS))
        out.append("Server CPU share in the median round (client certificate): " + ", ".join(
            f"{n} {statistics.median(x['server_cpu_share'] for x in rounds[n]['cert']):.2f}" for n in SERVERS)
            + "; load generator: " + ", ".join(
            f"{n} {statistics.median(x['loadgen_cpu_share'] for x in rounds[n]['cert']):.2f}" for n in SERVERS))
        versions = ", ".join(v for v in (peer_version(["dpkg-query", "-W", "-f", "molly-brown ${Version}", "molly-brown"], "molly-brown"),
                                          peer_version(["jetforce", "-V"], None)) if v)
        text = (
            "# Benchmarks: Gemini, certgate against molly-brown and Jetforce\n\n"
            "Regenerate with `bash bench/gemini.sh " + f"{args.seconds} {args.idle} {args.rounds}`.\n\n"
            + time.strftime("This run: %Y-%m-%d %H:%M UTC", time.gmtime()) + f", {os.cpu_count()} cores; {versions}.\n\n"
            + __doc__.split("\n\n", 2)[2].split("\n\nMeasures")[0].replace("\n", " ") + "\n\n"
            + "\n".join(out) + "\n"
        )
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "benchmarks-gemini.md").write_text(text)
        print(text)
    finally:
        g.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
