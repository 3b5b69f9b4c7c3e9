//! The admin status page in a real browser (headless Chromium, driven over the DevTools
//! protocol): its content, that client-chosen text on it stays text, that it fits a desktop and
//! a phone-width viewport; and `certgate status` printing the same in a terminal. Screenshots
//! are saved for people to look at (the test prints where).

use std::process::Command;

use certgate_testkit::{Spec, require_peer, self_signed, tempdir};

use crate::server::Serve;

/// Loads URL (argv[2]) in headless Chromium (argv[1]) at two viewports; prints one JSON line
/// per viewport with what the page measured and showed, and saves a screenshot per viewport to
/// the directory argv[3].
const DRIVER: &str = r#"
import asyncio, base64, json, os, socket, subprocess, sys, tempfile, time
import aiohttp

chromium, url, out = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
profile = tempfile.mkdtemp()
proc = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
    "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}",
    f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1", "about:blank"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

async def main():
    async with aiohttp.ClientSession() as http:
        deadline = time.time() + 30
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                    pages = [t for t in await r.json() if t["type"] == "page"]
                    if pages:
                        break
            except aiohttp.ClientError:
                pass
            if time.time() > deadline:
                raise SystemExit("chromium did not start")
            await asyncio.sleep(0.2)
        async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            n = 0
            async def call(method, **params):
                nonlocal n
                n += 1
                await ws.send_json({"id": n, "method": method, "params": params})
                while True:
                    m = await ws.receive_json()
                    if m.get("id") == n:
                        if "error" in m:
                            raise SystemExit(f"{method}: {m['error']}")
                        return m["result"]
            for name, w, h, mobile in [("desktop", 1280, 800, False), ("phone", 390, 844, True)]:
                await call("Emulation.setDeviceMetricsOverride", width=w, height=h,
                           deviceScaleFactor=1, mobile=mobile)
                await call("Page.navigate", url=url)
                for _ in range(100):
                    r = await call("Runtime.evaluate", expression="document.readyState", returnByValue=True)
                    if r["result"]["value"] == "complete":
                        break
                    await asyncio.sleep(0.05)
                probe = """JSON.stringify({
                    scroll_width: document.documentElement.scrollWidth,
                    inner_width: window.innerWidth,
                    font_px: parseFloat(getComputedStyle(document.body).fontSize),
                    text: document.body.innerText,
                    images: document.images.length,
                    scripts: document.scripts.length,
                    headings: [...document.querySelectorAll('h2')].map(h => h.textContent)})"""
                r = await call("Runtime.evaluate", expression=probe, returnByValue=True)
                shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                path = os.path.join(out, f"status-{name}.png")
                with open(path, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
                found = json.loads(r["result"]["value"])
                found["viewport"] = name
                found["screenshot"] = path
                print(json.dumps(found), flush=True)

try:
    asyncio.run(main())
finally:
    proc.kill()
"#;

#[test]
fn the_status_page_shows_the_state_in_a_browser_and_in_a_terminal() {
    let chromium = require_peer!("chromium");
    let python = require_peer!("python3");
    let curl = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    crate::ingress::write_pki(d);
    crate::certgate_ok(d, "log init --origin status.test/log --dir data/log");
    // A certificate whose subject is markup: it must show as text.
    let mut evil = Spec::client("<img src=x onerror=alert(1)>");
    evil.not_after = time::Duration::days(30);
    let evil = self_signed(&evil);
    std::fs::write(d.join("evil.pem"), &evil.pem).unwrap();
    std::fs::write(d.join("evil.key"), &evil.key_pem).unwrap();
    // A fixed admin port: `certgate status` finds the server through the config.
    let admin = crate::free_port();
    let config = r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["root.pem"]
crl = ["int.crl"]
[admin]
listen = "127.0.0.1:ADMIN"
[log]
origin = "status.test/log"
data_dir = "data/log"
listen = "127.0.0.1:0"
identity = "server"
trust = "clients"
writers = [{ cn = "publisher" }]
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
  [[ingress.route]]
  upstream = "echo"
  [[ingress.route]]
  path = "/admin"
  upstream = "echo"
  require_verified = true
"#;
    std::fs::write(
        d.join("c.toml"),
        config.replace("ADMIN", &admin.to_string()),
    )
    .unwrap();
    let server = Serve::start(d, "c.toml", 3);
    let port = server.port("web");
    for client in ["none", "evil"] {
        let (code, _) = crate::https_get(&curl, d, port, "/admin", client, &[]);
        assert!(code == "401" || code == "403", "{client}: {code}");
    }
    assert_eq!(server.port("admin"), admin);
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out = Command::new(&python)
        .args(["-c", DRIVER])
        .arg(&chromium)
        .arg(format!("http://127.0.0.1:{admin}/"))
        .arg(&shots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser driver failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let views: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(views.len(), 2, "{stdout}");
    for v in &views {
        let text = v["text"].as_str().unwrap();
        for want in [
            "Listeners",
            "127.0.0.1:",
            "/admin",
            "verified certificate",
            "identity server",
            "CN=localhost",
            "CA of trust clients",
            "CRLs",
            "Recent refusals (2)",
            "a client certificate is required",
            r"CN=\<img src=x onerror=alert(1)\>",
            "the client certificate is not verified (unknown_issuer)",
            "the log API",
            "status.test/log",
        ] {
            assert!(
                text.contains(want),
                "{}: `{want}` not on the page:\n{text}",
                v["viewport"]
            );
        }
        assert_eq!(
            v["images"], 0,
            "markup from a certificate became an element"
        );
        assert_eq!(v["scripts"], 0);
        // Nothing wider than the viewport: wide tables scroll inside their own box.
        assert!(
            v["scroll_width"].as_i64() <= v["inner_width"].as_i64(),
            "{}: the page is wider than the viewport: {v}",
            v["viewport"]
        );
        assert!(v["font_px"].as_f64().unwrap() >= 14.0, "{v}");
        eprintln!("screenshot: {}", v["screenshot"].as_str().unwrap());
    }
    // The same in a terminal.
    let text = crate::certgate_ok(d, "status --config c.toml");
    for want in [
        "Routes",
        "/admin",
        "verified certificate",
        "Recent refusals (2)",
        "status.test/log",
    ] {
        assert!(
            text.contains(want),
            "`{want}` not in `certgate status`:\n{text}"
        );
    }
    let json = crate::certgate_ok(d, "status --config c.toml --json");
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["log"]["size"], 0);
    assert_eq!(doc["denials"].as_array().unwrap().len(), 2);
}
