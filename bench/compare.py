#!/usr/bin/env python3
"""certgate, nginx, HAProxy and Caddy side by side, in one run, configured like for like.

    python3 bench/compare.py [--seconds 5] [--rounds 3] [--idle 10000] [--out docs]

Run by `bench/run.sh`, which installs the peers and builds certgate and the load generator first.

Every server terminates TLS 1.3 with the same ECDSA P-256 certificate, X25519 only, requires and
verifies a client certificate from the same CA, has session tickets and session caches off, runs
on core 0 with one worker or thread (Caddy with GOMAXPROCS=1), and proxies to the same plain
HTTP/1.1 upstream (an nginx `return 200 "ok"`, one worker, core 1). The load generator also runs
on core 1, never resumes a session, and reports its own CPU share so that a figure limited by the
client rather than the server shows as such.

Measures, per server: full handshakes/s (a new connection per request, server verification off in
the client so the client's share of the crypto stays small); HTTP/1.1 keep-alive requests/s over
64 connections with p50/p99/p99.9; HTTP/2 requests/s over 16 connections x 16 streams; idle
memory per HTTP/1.1 and per HTTP/2 connection (RSS growth of a freshly started server holding
`--idle` connections); a 1 GiB download through the server vs straight from the upstream; the
server's user and kernel CPU per request and its system calls per request (`strace -c`).
Throughput rounds alternate between the servers so that drift on a shared machine hits every one
of them; each figure is the median over the rounds, with the spread (min-max) next to it.

Writes `OUT/benchmarks.md` (tables, the machine, how to reproduce) and the plots
`OUT/benchmarks/throughput.svg` and `OUT/benchmarks/latency.svg`; raw rounds go to
`OUT/benchmarks/results.json`.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CERTGATE = ROOT / "target/release/certgate"
LOADGEN = ROOT / "target/release/certgate-loadgen"
SERVERS = ["certgate", "nginx", "haproxy", "caddy"]
PORTS = {"upstream": 18080, "upstream_tls": 18081, "certgate": 18443, "nginx": 18444, "haproxy": 18445, "caddy": 18446,
         "certgate_open": 18447}
TICKS = os.sysconf("SC_CLK_TCK")


def sh(*args, **kw):
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))}: exit {done.returncode}\n{done.stderr}")
    return done


def cpu_split(pid):
    """User and system CPU seconds of a whole process (every thread), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def cpu_seconds(pid):
    return sum(cpu_split(pid))


def sleeps(pid):
    """How many times a single-threaded process has gone to sleep (voluntary context switches)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise RuntimeError(f"no voluntary_ctxt_switches for {pid}")


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class Bench:
    def __init__(self, work, args):
        self.w = work
        self.args = args
        self.procs = {}

    # ---- set-up -------------------------------------------------------------------------------

    def certificates(self):
        w = self.w
        sh(CERTGATE, "ca", "init", "--dir", w / "ca")
        sh(CERTGATE, "ca", "issue", "--dir", w / "ca", "--server", "localhost", "--ip", "127.0.0.1",
           "--out", w / "server")
        sh(CERTGATE, "ca", "issue", "--dir", w / "ca", "--client", "loadgen", "--out", w / "client")
        (w / "server-combined.pem").write_text((w / "server.pem").read_text()
                                               + (w / "server.key").read_text())
        # The download: a 1 GiB file the upstream serves with sendfile (sparse, so it costs no disk).
        with open(w / "big", "wb") as f:
            f.truncate(1 << 30)
        (w / "big").chmod(0o644)

    def configs(self):
        w, p = self.w, PORTS
        (w / "upstream.conf").write_text(f"""
worker_processes 1;
pid {w}/upstream.pid;
error_log {w}/upstream-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{p['upstream']};
    keepalive_requests 1000000;
    location / {{ return 200 "ok"; }}
    location = /big {{ root {w}; sendfile on; }}
  }}
  server {{
    listen 127.0.0.1:{p['upstream_tls']} ssl;
    ssl_certificate {w}/server.pem;
    ssl_certificate_key {w}/server.key;
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519;
    location = /big {{ root {w}; }}
  }}
}}
""")
        (w / "nginx.conf").write_text(f"""
worker_processes 1;
pid {w}/nginx.pid;
error_log {w}/nginx-error.log;
worker_rlimit_nofile 20000;
events {{ worker_connections 19000; }}
http {{
  access_log off;
  upstream app {{ server 127.0.0.1:{p['upstream']}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{p['nginx']} ssl http2;
    ssl_certificate {w}/server.pem;
    ssl_certificate_key {w}/server.key;
    ssl_client_certificate {w}/ca/ca.pem;
    ssl_verify_client on;
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519;
    ssl_session_cache off;
    ssl_session_tickets off;
    keepalive_requests 1000000;
    http2_max_requests 1000000;
    keepalive_timeout 120s;
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""")
        # HAProxy refuses to start unless 2 x maxconn + 14 descriptors fit under the process's
        # limit (20,000 on the machines this runs on, and not raisable there), so maxconn is
        # 9,990 and the idle measurement holds 9,900 connections on every server by default.
        (w / "haproxy.cfg").write_text(f"""
global
  nbthread 1
  maxconn 9990
  tune.ssl.cachesize 0
  ssl-default-bind-options ssl-min-ver TLSv1.3 no-tls-tickets
  ssl-default-bind-curves X25519
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 120s
frontend bench
  bind 127.0.0.1:{p['haproxy']} ssl crt {w}/server-combined.pem ca-file {w}/ca/ca.pem verify required alpn h2,http/1.1
  default_backend app
backend app
  http-reuse always
  server upstream 127.0.0.1:{p['upstream']}
""")
        caddy = {
            "admin": {"disabled": True},
            "logging": {"logs": {"default": {"level": "ERROR"}}},
            "apps": {
                "http": {"servers": {"bench": {
                    "listen": [f"127.0.0.1:{p['caddy']}"],
                    "automatic_https": {"disable": True},
                    "idle_timeout": "120s",
                    "routes": [{"handle": [{
                        "handler": "reverse_proxy",
                        "upstreams": [{"dial": f"127.0.0.1:{p['upstream']}"}],
                        "transport": {"protocol": "http",
                                      "keep_alive": {"max_idle_conns_per_host": 256}},
                    }]}],
                    "tls_connection_policies": [{
                        "certificate_selection": {"any_tag": ["bench"]},
                        "protocol_min": "tls1.3",
                        "curves": ["x25519"],
                        "alpn": ["h2", "http/1.1"],
                        "client_authentication": {
                            "trusted_ca_certs_pem_files": [str(w / "ca/ca.pem")],
                            "mode": "require_and_verify",
                        },
                    }],
                }}},
                "tls": {
                    "certificates": {"load_files": [{
                        "certificate": str(w / "server.pem"), "key": str(w / "server.key"),
                        "tags": ["bench"]}]},
                    "session_tickets": {"disabled": True},
                },
            },
        }
        (w / "caddy.json").write_text(json.dumps(caddy, indent=1))
        (w / "certgate.toml").write_text(f"""version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["ca/ca.pem"]
[[ingress]]
name = "bench"
listen = "127.0.0.1:{p['certgate']}"
identity = "server"
client_auth = "require_and_verify"
trust = "clients"
min_tls = "1.3"
forward = []
x_forwarded = false
max_connections = 19000
  [[ingress.route]]
  upstream = "http://127.0.0.1:{p['upstream']}"
# The same, without client certificates: for cross-checking the load generator's HTTP/2 against
# h2load, which cannot present one.
[[ingress]]
name = "open"
listen = "127.0.0.1:{p['certgate_open']}"
identity = "server"
client_auth = "none"
min_tls = "1.3"
forward = []
x_forwarded = false
  [[ingress.route]]
  upstream = "http://127.0.0.1:{p['upstream']}"
""")

    # ---- processes ----------------------------------------------------------------------------

    def spawn(self, name, core, argv, env=None):
        log = open(self.w / f"{name}.out", "w")
        proc = subprocess.Popen(["taskset", "-c", str(core)] + [str(a) for a in argv],
                                cwd=self.w, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start(self, name):
        """Starts a server and returns the PID whose CPU and memory are the server's."""
        w = self.w
        if name == "upstream":
            self.spawn(name, 1, ["nginx", "-p", w, "-c", w / "upstream.conf", "-g", "daemon off;"])
        elif name == "nginx":
            self.spawn(name, 0, ["nginx", "-p", w, "-c", w / "nginx.conf", "-g", "daemon off;"])
        elif name == "haproxy":
            self.spawn(name, 0, ["haproxy", "-db", "-f", w / "haproxy.cfg"])
        elif name == "caddy":
            self.spawn(name, 0, ["caddy", "run", "--config", w / "caddy.json"],
                       env={"GOMAXPROCS": "1", "HOME": str(w)})
        elif name == "certgate":
            self.spawn(name, 0, [CERTGATE, "serve", "--config", w / "certgate.toml"],
                       env={"CERTGATE_LOG": "error"})
        port = PORTS[name]
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.procs[name].poll() is not None:
                raise SystemExit(f"{name} exited at start:\n{(w / f'{name}.out').read_text()}")
            if subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"{name} did not listen on {port}")
        pid = self.procs[name].pid
        if name in ("nginx", "upstream"):
            # The master forks one worker; the worker does the work.
            for _ in range(50):
                kids = sh("pgrep", "-P", pid).stdout.split() if subprocess.run(
                    ["pgrep", "-P", str(pid)], capture_output=True).returncode == 0 else []
                if kids:
                    return int(kids[0])
                time.sleep(0.1)
            raise SystemExit(f"{name} started no worker")
        return pid

    def stop(self, name):
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)

    # ---- load ---------------------------------------------------------------------------------

    def load(self, port, *args):
        out = sh("taskset", "-c", "1", LOADGEN, "--addr", f"127.0.0.1:{port}", "--ca",
                 self.w / "ca/ca.pem", "--cert", self.w / "client.pem", "--key",
                 self.w / "client.key", *args, timeout=600).stdout
        return json.loads(out.strip().splitlines()[-1])

    def measured(self, pid, fn):
        """Runs `fn` and adds the server's and the upstream's CPU share over it to its result."""
        t0, s0, u0 = time.time(), cpu_split(pid), cpu_seconds(self.upstream_pid)
        z0 = sleeps(self.upstream_pid)
        result = fn()
        dt = time.time() - t0
        s1 = cpu_split(pid)
        result["upstream_sleeps"] = sleeps(self.upstream_pid) - z0
        result["server_cpu_share"] = (sum(s1) - sum(s0)) / dt
        if result.get("requests"):
            result["server_user_us_per_req"] = (s1[0] - s0[0]) * 1e6 / result["requests"]
            result["server_sys_us_per_req"] = (s1[1] - s0[1]) * 1e6 / result["requests"]
            result["upstream_sleeps_per_req"] = result["upstream_sleeps"] / result["requests"]
        result["upstream_cpu_share"] = (cpu_seconds(self.upstream_pid) - u0) / dt
        return result

    def throughput(self, name, pid, secs):
        port = PORTS[name]
        hs = self.measured(pid, lambda: self.load(
            port, "--mode", "handshake", "--connections", "16", "--duration", secs,
            "--no-verify-server"))
        h1 = self.measured(pid, lambda: self.load(
            port, "--mode", "keepalive", "--connections", "64", "--duration", secs))
        h2 = self.measured(pid, lambda: self.load(
            port, "--mode", "keepalive", "--http2", "--connections", "16", "--streams", "16",
            "--duration", secs))
        return {"hs": hs, "h1": h1, "h2": h2}

    def idle(self, name, http2):
        """RSS growth per held connection of a freshly started server."""
        pid = self.start(name)
        port = PORTS[name]
        self.load(port, "--mode", "keepalive", "--connections", "4", "--duration", "1",
                  *(["--http2"] if http2 else []))
        time.sleep(1)
        before = rss_kib(pid)
        n = self.args.idle
        cmd = ["taskset", "-c", "1", LOADGEN, "--addr", f"127.0.0.1:{port}", "--ca",
               self.w / "ca/ca.pem", "--cert", self.w / "client.pem", "--key",
               self.w / "client.key", "--mode", "idle", "--connections", n, "--duration", "30",
               *(["--http2"] if http2 else [])]
        holder = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, text=True)
        line = holder.stdout.readline()
        time.sleep(1)
        after = rss_kib(pid)
        holder.kill()
        holder.wait()
        self.stop(name)
        opened = json.loads(line) if line else {"open": 0, "errors": n}
        return {"open": opened["open"], "errors": opened["errors"], "rss_before_kib": before,
                "rss_after_kib": after,
                "bytes_per_conn": (after - before) * 1024 / max(opened["open"], 1)}

    def download(self, name):
        port = PORTS[name]
        return self.load(port, "--mode", "download", "--path", "/big")["mib_per_s"]

    def download_direct(self):
        """Straight from the upstream: over plain HTTP, and over HTTPS from the upstream itself
        (nginx on core 1 encrypting, the client decrypting on the same core)."""
        plain = self.load(PORTS["upstream"], "--mode", "download", "--path", "/big",
                          "--via", "plain")["mib_per_s"]
        tls = self.load(PORTS["upstream_tls"], "--mode", "download", "--path", "/big")["mib_per_s"]
        return {"plain": plain, "tls": tls}

    def syscalls(self, name, pid, http2, secs):
        """System calls per request, counted by `strace -c` over a keep-alive run (strace slows
        the server down; the counts per request are what matter, not the rate)."""
        port = PORTS[name]
        out = self.w / f"strace-{name}-{http2}.txt"
        tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", str(out)],
                                  stderr=subprocess.DEVNULL)
        time.sleep(1)
        shape = (["--http2", "--connections", "16", "--streams", "16"] if http2
                 else ["--connections", "64"])
        res = self.load(port, "--mode", "keepalive", *shape, "--duration", secs)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        calls = {}
        for line in out.read_text().splitlines():
            f = line.split()
            if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                calls[f[-1]] = int(f[3])
        n = max(res["requests"], 1)
        top = sorted(calls.items(), key=lambda kv: -kv[1])[:4]
        return {"per_request": sum(calls.values()) / n,
                "top": {k: v / n for k, v in top}}

    def h2load_crosscheck(self, secs):
        """The load generator's HTTP/2 against h2load, on certgate's listener without client
        certificates, same connections and streams."""
        port = PORTS["certgate_open"]
        ours = self.load(port, "--mode", "keepalive", "--http2", "--connections", "16",
                         "--streams", "16", "--duration", secs)["rps"]
        out = sh("taskset", "-c", "1", "h2load", "-c", "16", "-m", "16", "-D", secs,
                 f"https://127.0.0.1:{port}/", timeout=120).stdout
        theirs = None
        for line in out.splitlines():
            if line.startswith("finished in"):
                theirs = float(line.split(",")[1].split()[0])
            if line.startswith("requests:") and " 0 succeeded" in line:
                raise SystemExit(f"h2load got no answers:\n{out}")
        return {"loadgen_rps": ours, "h2load_rps": theirs}


def crypto_ceiling():
    """Full handshakes/s one core could do if it did nothing but the server's public-key crypto
    for this handshake: one ECDSA P-256 signature, two verifications (the client's
    CertificateVerify and its certificate's signature by the CA), and an X25519 key generation and
    agreement, each timed by `openssl speed` here."""
    out = sh("taskset", "-c", "0", "openssl", "speed", "-seconds", "2", "-mr", "ecdsap256",
             "ecdhx25519").stdout
    sign = verify = x25519 = None
    for line in out.splitlines():
        f = line.split(":")
        if f[0] == "+F4":
            sign, verify = float(f[3]), float(f[4])
        elif f[0] == "+F5":
            x25519 = float(f[3])
    return 1 / (1 / sign + 2 / verify + 2 / x25519)


def median_spread(values):
    return statistics.median(values), min(values), max(values)


def summarize(rounds):
    s = {}
    for name in SERVERS:
        rows = [r for r in rounds if r["target"] == name]
        entry = {}
        for kind in ("hs", "h1", "h2"):
            rps = [r[kind]["rps"] for r in rows]
            mid = sorted(rows, key=lambda r: r[kind]["rps"])[len(rows) // 2][kind]
            entry[kind] = {"median": statistics.median(rps), "min": min(rps), "max": max(rps),
                           "p50": mid.get("p50_us"), "p99": mid.get("p99_us"),
                           "p999": mid.get("p999_us"),
                           "errors": sum(r[kind]["errors"] for r in rows),
                           "server_cpu": mid["server_cpu_share"],
                           "user_us": mid.get("server_user_us_per_req"),
                           "sys_us": mid.get("server_sys_us_per_req"),
                           "upstream_sleeps": mid.get("upstream_sleeps_per_req"),
                           "loadgen_cpu": mid["loadgen_cpu_share"],
                           "upstream_cpu": mid["upstream_cpu_share"]}
        s[name] = entry
    return s


# ---- plots (plain SVG, no plotting library needed) ---------------------------------------------

COLORS = {"certgate": "#1b7837", "nginx": "#2166ac", "haproxy": "#b2182b", "caddy": "#e08214"}


def bar_panels(title, panels, path, unit_fmt=lambda v: f"{v:,.0f}"):
    """`panels`: [(panel title, {server: (value, lo, hi)})]; bars with min-max whiskers."""
    pw, ph, top, left = 230, 260, 50, 20
    width = left + pw * len(panels) + 20
    height = top + ph + 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>']
    for i, (ptitle, values) in enumerate(panels):
        x0 = left + i * pw
        vmax = max(hi for _, _, hi in values.values()) or 1
        out.append(f'<text x="{x0 + pw / 2}" y="{top - 6}" text-anchor="middle">{ptitle}</text>')
        out.append(f'<line x1="{x0 + 10}" y1="{top + ph}" x2="{x0 + pw - 10}" y2="{top + ph}" '
                   f'stroke="#444"/>')
        bw = (pw - 40) / len(values)
        for j, (name, (v, lo, hi)) in enumerate(values.items()):
            bx = x0 + 20 + j * bw
            h = v / vmax * (ph - 30)
            out.append(f'<rect x="{bx + 4:.1f}" y="{top + ph - h:.1f}" width="{bw - 8:.1f}" '
                       f'height="{h:.1f}" fill="{COLORS[name]}"/>')
            cx = bx + bw / 2
            ylo, yhi = top + ph - lo / vmax * (ph - 30), top + ph - hi / vmax * (ph - 30)
            if hi > lo:
                out.append(f'<line x1="{cx:.1f}" y1="{ylo:.1f}" x2="{cx:.1f}" y2="{yhi:.1f}" '
                           f'stroke="black"/>')
            out.append(f'<text x="{cx:.1f}" y="{min(top + ph - h, yhi) - 4:.1f}" '
                       f'text-anchor="middle" font-size="10">{unit_fmt(v)}</text>')
            out.append(f'<text x="{cx:.1f}" y="{top + ph + 14}" text-anchor="middle" '
                       f'font-size="10">{name}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def write_report(out_dir, args, s, idle, dl, direct, ceiling, cross, rounds, started,
                 sys_calls):
    figs = out_dir / "benchmarks"
    figs.mkdir(parents=True, exist_ok=True)
    (figs / "results.json").write_text(json.dumps(
        {"summary": s, "idle": idle, "download_mib_s": dl, "direct_mib_s": direct,
         "crypto_ceiling_hs": ceiling, "h2load_crosscheck": cross, "syscalls": sys_calls,
         "rounds": rounds}, indent=1))
    bar_panels("Throughput per server (median of rounds; whiskers: min-max)", [
        ("full mTLS handshakes/s", {n: (s[n]["hs"]["median"], s[n]["hs"]["min"],
                                        s[n]["hs"]["max"]) for n in SERVERS}),
        ("HTTP/1.1 keep-alive req/s", {n: (s[n]["h1"]["median"], s[n]["h1"]["min"],
                                           s[n]["h1"]["max"]) for n in SERVERS}),
        ("HTTP/2 req/s (16 x 16 streams)", {n: (s[n]["h2"]["median"], s[n]["h2"]["min"],
                                                s[n]["h2"]["max"]) for n in SERVERS}),
    ], figs / "throughput.svg")
    lat = []
    for kind, label in (("h1", "HTTP/1.1"), ("h2", "HTTP/2")):
        for pct in ("p50", "p99", "p999"):
            lat.append((f"{label} {pct.replace('p999', 'p99.9')} (µs)",
                        {n: (s[n][kind][pct], s[n][kind][pct], s[n][kind][pct])
                         for n in SERVERS}))
    bar_panels("Latency percentiles, median round (lower is better)", lat,
               figs / "latency.svg")

    def best_peer(kind, key="median", high=True):
        peers = {n: s[n][kind][key] for n in SERVERS if n != "certgate"}
        return (max if high else min)(peers.items(), key=lambda kv: kv[1])

    def row(label, kind, key="median", fmt="{:,.0f}"):
        cells = []
        for n in SERVERS:
            v = s[n][kind][key]
            if key == "median":
                cells.append(f"{fmt.format(v)} ({fmt.format(s[n][kind]['min'])}-"
                             f"{fmt.format(s[n][kind]['max'])})")
            else:
                cells.append(fmt.format(v))
        peer, pv = best_peer(kind, key)
        return f"| {label} | " + " | ".join(cells) + \
            f" | {s['certgate'][kind][key] / pv:.2f}x {peer} |"

    lines = [
        "# Benchmarks: certgate, nginx, HAProxy and Caddy in one run",
        "",
        "Regenerate everything on this page (tables and plots) with one command:",
        "",
        "```sh",
        f"bash bench/run.sh {args.seconds} {args.idle} {args.rounds}",
        "```",
        "",
        f"This run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"{args.rounds} alternating rounds of {args.seconds} s, {args.idle:,} idle connections. "
        f"Peers: {peer_versions()}.",
        "",
        "Set-up, the same for every server: TLS 1.3, ECDSA P-256 server certificate, X25519 only, "
        "client certificate required and verified against the same CA, no session tickets or "
        "session cache, one worker/thread on core 0 (Caddy with GOMAXPROCS=1), proxying to one "
        "plain HTTP/1.1 upstream (nginx `return 200`) on core 1. The load generator "
        "(`certgate-loadgen`) runs on core 1 too and never resumes a session; its CPU share and "
        "the upstream's are in the last table, so a figure bounded by core 1 rather than by the "
        "server shows as such. Absolute figures differ between machines and runs; the ratios "
        "within one run are what this page is for.",
        "",
        "## Throughput and latency",
        "",
        "Median over the rounds, spread (min-max) in brackets; the last column is certgate "
        "divided by the best peer.",
        "",
        "| measure | " + " | ".join(SERVERS) + " | certgate / best peer |",
        "|---|" + "---|" * (len(SERVERS) + 1),
        row("full mTLS handshakes/s", "hs"),
        row("HTTP/1.1 keep-alive req/s (64 connections)", "h1"),
        row("HTTP/2 req/s (16 connections x 16 streams)", "h2"),
    ]
    for kind, label in (("h1", "HTTP/1.1"), ("h2", "HTTP/2")):
        cells = [f"{s[n][kind]['p50']:,} / {s[n][kind]['p99']:,} / {s[n][kind]['p999']:,}"
                 for n in SERVERS]
        peer, pv = best_peer(kind, "p99", high=False)
        lines.append(f"| {label} p50 / p99 / p99.9 latency (µs) | " + " | ".join(cells)
                     + f" | p99 {s['certgate'][kind]['p99'] / pv:.2f}x {peer} (lower is better) |")
    for http2 in (False, True):
        key = "h2" if http2 else "h1"
        cells = [f"{idle[n][key]['bytes_per_conn'] / 1024:.1f} KiB ({idle[n][key]['open']:,} open)"
                 for n in SERVERS]
        peer = min((n for n in SERVERS if n != "certgate"),
                   key=lambda n: idle[n][key]["bytes_per_conn"])
        ratio = idle["certgate"][key]["bytes_per_conn"] / max(idle[peer][key]["bytes_per_conn"], 1)
        lines.append(f"| idle memory per {'HTTP/2' if http2 else 'HTTP/1.1'} connection | "
                     + " | ".join(cells) + f" | {ratio:.2f}x {peer} (lower is better) |")
    cells = [f"{dl[n]:,.0f} MiB/s ({dl[n] / direct['tls']:.2f}x direct TLS, "
             f"{dl[n] / direct['plain']:.2f}x plain)" for n in SERVERS]
    best = max((n for n in SERVERS if n != "certgate"), key=lambda n: dl[n])
    lines.append("| 1 GiB download through the server (best of 2) | " + " | ".join(cells)
                 + f" | {dl['certgate'] / dl[best]:.2f}x {best} |")
    lines += [
        "",
        f"Straight from the upstream (best of 2): {direct['tls']:,.0f} MiB/s over HTTPS served by "
        f"the upstream nginx itself (\"direct TLS\"), {direct['plain']:,.0f} MiB/s over plain "
        f"HTTP. Through a server the client still decrypts on core 1 while the server encrypts on "
        f"core 0; plain HTTP has no TLS on either side, so it bounds what any TLS path can reach. "
        f"Public-key crypto "
        f"ceiling for this handshake on one core, from `openssl speed` in this run (one ECDSA "
        f"P-256 signature, two verifications, an X25519 key generation and agreement): "
        f"{ceiling:,.0f}/s; certgate reaches {s['certgate']['hs']['median'] / ceiling:.0%} of it.",
        "",
        "![throughput](benchmarks/throughput.svg)",
        "",
        "![latency](benchmarks/latency.svg)",
        "",
        "## Who was busy (median round)",
        "",
        "CPU share of one core over the measurement: the server (core 0), the load generator and "
        "the upstream (both core 1). A server share well under 1.0 with core 1 near 1.0 means "
        "core 1, not the server, set the pace.",
        "",
        "| measure | " + " | ".join(f"{n}: server / loadgen / upstream" for n in SERVERS) + " |",
        "|---|" + "---|" * len(SERVERS),
    ]
    for kind, label in (("hs", "handshakes"), ("h1", "HTTP/1.1 keep-alive"), ("h2", "HTTP/2")):
        lines.append(f"| {label} | " + " | ".join(
            f"{s[n][kind]['server_cpu']:.2f} / {s[n][kind]['loadgen_cpu']:.2f} / "
            f"{s[n][kind]['upstream_cpu']:.2f}" for n in SERVERS) + " |")
    lines += [
        "",
        "## Where the time goes per request",
        "",
        "The server's CPU per request over the median round, split into user space and kernel "
        "(from /proc/PID/stat), and its system calls per request (`strace -c` over a separate "
        f"{args.seconds} s keep-alive run, most frequent calls in brackets). \"Upstream sleeps\" "
        "counts how often the upstream nginx went to sleep per request (its voluntary context "
        "switches): each sleep means the server's next write to it had to wake it on the other "
        "core, which the kernel charges to the server's CPU; a server that writes to the upstream "
        "in bursts keeps it awake.",
        "",
        "| server | HTTP/1.1 µs user / kernel | HTTP/1.1 syscalls | HTTP/1.1 upstream sleeps "
        "| HTTP/2 µs user / kernel | HTTP/2 syscalls | HTTP/2 upstream sleeps |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in SERVERS:
        cells = []
        for kind in ("h1", "h2"):
            cells.append(f"{s[n][kind]['user_us']:.1f} / {s[n][kind]['sys_us']:.1f}")
            sc = sys_calls[n][kind]
            cells.append(f"{sc['per_request']:.2f} ("
                         + ", ".join(f"{k} {v:.2f}" for k, v in sc["top"].items()) + ")")
            cells.append(f"{s[n][kind]['upstream_sleeps']:.2f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    errs = {n: {k: s[n][k]["errors"] for k in ("hs", "h1", "h2")} for n in SERVERS}
    lines += [
        "",
        f"Failed requests over all rounds: {json.dumps(errs)}.",
        "",
        "## The load generator's HTTP/2, cross-checked",
        "",
        f"Against h2load (nghttp2) on a certgate listener that does not ask for a client "
        f"certificate (h2load cannot present one), 16 connections x 16 streams, {args.seconds} s "
        f"each: certgate-loadgen {cross['loadgen_rps']:,.0f} req/s, h2load "
        f"{cross['h2load_rps']:,.0f} req/s.",
        "",
    ]
    (out_dir / "benchmarks.md").write_text("\n".join(lines))


def peer_versions():
    v = []
    v.append(sh("nginx", "-v").stderr.strip().replace("nginx version: ", ""))
    v.append(sh("haproxy", "-v").stdout.split()[0] + " " + sh("haproxy", "-v").stdout.split()[2])
    v.append("caddy " + sh("caddy", "version").stdout.split()[0])
    return ", ".join(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=int, default=9900)
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    for tool in ("nginx", "haproxy", "caddy", "h2load", "taskset", "openssl", "strace"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (bench/run.sh installs it)")
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="certgate-compare."))
    work.chmod(0o755)  # nginx's workers (not root) read the download from here
    b = Bench(work, args)
    try:
        b.certificates()
        b.configs()
        b.upstream_pid = b.start("upstream")
        pids = {n: b.start(n) for n in SERVERS}
        secs = str(args.seconds)
        for n in SERVERS:  # warm-up
            b.load(PORTS[n], "--mode", "keepalive", "--connections", "8", "--duration", "1")
        rounds = []
        for r in range(1, args.rounds + 1):
            for n in SERVERS:
                res = b.throughput(n, pids[n], secs)
                res.update(target=n, round=r)
                rounds.append(res)
                print(f"round {r} {n}: hs {res['hs']['rps']:.0f}/s  h1 {res['h1']['rps']:.0f}/s"
                      f"  h2 {res['h2']['rps']:.0f}/s", file=sys.stderr, flush=True)
        cross = b.h2load_crosscheck(secs)
        sys_calls = {n: {"h1": b.syscalls(n, pids[n], False, secs),
                         "h2": b.syscalls(n, pids[n], True, secs)} for n in SERVERS}
        direct_runs, dl_runs = [], {n: [] for n in SERVERS}
        for _ in range(2):
            direct_runs.append(b.download_direct())
            for n in SERVERS:
                dl_runs[n].append(b.download(n))
        dl = {n: max(v) for n, v in dl_runs.items()}
        direct = {k: max(d[k] for d in direct_runs) for k in ("plain", "tls")}
        for n in SERVERS:
            b.stop(n)
        time.sleep(1)
        idle = {}
        for n in SERVERS:
            idle[n] = {"h1": b.idle(n, False), "h2": b.idle(n, True)}
            print(f"idle {n}: {idle[n]['h1']['bytes_per_conn']:.0f} B/conn HTTP/1.1, "
                  f"{idle[n]['h2']['bytes_per_conn']:.0f} B/conn HTTP/2", file=sys.stderr,
                  flush=True)
        ceiling = crypto_ceiling()
        s = summarize(rounds)
        write_report(args.out, args, s, idle, dl, direct, ceiling, cross, rounds, started,
                     sys_calls)
        print((args.out / "benchmarks.md").read_text())
    finally:
        b.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
