//! Hot reload: certificates swap under load with zero failed requests; a broken file or config
//! keeps the running state; tightened policy and new CRLs apply to the next connection.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certgate_testkit::{Spec, TestPki, crl, require_peer, serial_of, signed_by, tempdir};

use crate::server::Serve;

/// GET / with a rustls client; returns the server certificate's DER and the status line.
fn get(port: u16, root: &[u8]) -> Result<(Vec<u8>, String), String> {
    use std::io::{Read as _, Write as _};
    let config = crate::tls::config(root, &[], crate::tls::Auth::None);
    let mut tls =
        crate::tls::connect(port, config, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    tls.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let status = out.lines().next().unwrap_or_default().to_owned();
    Ok((leaf, status))
}

/// Replaces a file the way careful tools do: write beside it, then rename over it.
fn replace(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.new"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[test]
fn certificates_swap_under_load_and_broken_files_keep_the_old_state() {
    let dir = tempdir();
    let d = dir.path();
    let pki = TestPki::new();
    let b = signed_by(&Spec::server("localhost-b"), &pki.intermediate);
    replace(
        d,
        "server.pem",
        &format!("{}{}", pki.server.pem, pki.intermediate.pem),
    );
    replace(d, "server.key", &pki.server.key_pem);
    let config = r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
  [[ingress.route]]
  upstream = "echo"
"#;
    replace(d, "c.toml", config);
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let load = {
        let (done, count, failures, seen) =
            (done.clone(), count.clone(), failures.clone(), seen.clone());
        let root = pki.root.der.clone();
        std::thread::spawn(move || {
            // A bounded loop: at most 3000 requests or until told to stop.
            for _ in 0..3000 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                match get(port, &root) {
                    Ok((leaf, status)) if status.contains("200") => seen.lock().unwrap().push(leaf),
                    Ok((_, status)) => failures.lock().unwrap().push(status),
                    Err(e) => failures.lock().unwrap().push(e),
                }
                count.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let wait_for = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("first requests", &|| count.load(Ordering::SeqCst) >= 20);
    // Swap to certificate B (key first: in between, the pair does not match and is refused).
    replace(d, "server.key", &b.key_pem);
    replace(
        d,
        "server.pem",
        &format!("{}{}", b.pem, pki.intermediate.pem),
    );
    server.signal("HUP");
    wait_for("certificate B", &|| {
        seen.lock().unwrap().last().is_some_and(|l| *l == b.der)
    });
    // A broken certificate file: the reload is refused and B stays.
    replace(d, "server.pem", "-----BEGIN CERTIFICATE-----\ngarbage\n");
    server.signal("HUP");
    let before = count.load(Ordering::SeqCst);
    wait_for("requests after the broken file", &|| {
        count.load(Ordering::SeqCst) >= before + 30
    });
    // A broken config: likewise.
    replace(d, "c.toml", "version = 1\n[[ingress]]\nname = \"web\"\n");
    server.signal("HUP");
    let before = count.load(Ordering::SeqCst);
    wait_for("requests after the broken config", &|| {
        count.load(Ordering::SeqCst) >= before + 30
    });
    done.store(true, Ordering::SeqCst);
    load.join().unwrap();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed requests during reloads: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let seen = seen.lock().unwrap();
    assert!(seen.contains(&pki.server.der), "never served certificate A");
    assert_eq!(
        seen.last().unwrap(),
        &b.der,
        "certificate B was not kept after the broken reloads"
    );
}

#[test]
fn tightened_policy_and_new_crls_apply_to_the_next_connection() {
    let curl_bin = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    let pki = TestPki::new();
    replace(d, "root.pem", &pki.root.pem);
    replace(
        d,
        "server.pem",
        &format!("{}{}", pki.server.pem, pki.intermediate.pem),
    );
    replace(d, "server.key", &pki.server.key_pem);
    replace(
        d,
        "alice.pem",
        &format!("{}{}", pki.client.pem, pki.intermediate.pem),
    );
    replace(d, "alice.key", &pki.client.key_pem);
    std::fs::write(d.join("int.crl"), crl(&pki.intermediate, &[], 7)).unwrap();
    let config = |allowed: &str| {
        format!(
            r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["root.pem"]
crl = ["int.crl"]
[[ingress]]
name = "web"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "require_and_verify"
trust = "clients"
  [[ingress.route]]
  upstream = "echo"
  allow = [{{ cn = "{allowed}" }}]
"#
        )
    };
    replace(d, "c.toml", &config("alice"));
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("web");
    let status = || -> String {
        let resolve = format!("localhost:{port}:127.0.0.1");
        let out = Command::new(&curl_bin)
            .current_dir(d)
            .args([
                "-s",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                "root.pem",
                "--resolve",
                &resolve,
                "--cert",
                "alice.pem",
                "--key",
                "alice.key",
            ])
            .arg(format!("https://localhost:{port}/"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let wait_status = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = status();
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "status stayed {got}, want {want}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(status(), "200");
    // Tighten the route policy: the file watcher picks it up (no signal).
    replace(d, "c.toml", &config("bob"));
    wait_status("403");
    // Loosen it again, then revoke alice in a new CRL: the handshake itself now refuses her.
    replace(d, "c.toml", &config("alice"));
    wait_status("200");
    let tmp = d.join(".int.crl.new");
    std::fs::write(&tmp, crl(&pki.intermediate, &[serial_of(&pki.client)], 7)).unwrap();
    std::fs::rename(&tmp, d.join("int.crl")).unwrap();
    server.signal("HUP");
    wait_status("000");
}

/// A reload adds and removes listeners: a new one is served without a restart, a removed one
/// stops accepting while the others go on, and a new one that cannot be bound refuses the whole
/// reload (the running listeners stay).
#[test]
fn reload_adds_and_removes_listeners() {
    let dir = tempdir();
    let d = dir.path();
    let pki = TestPki::new();
    std::fs::write(
        d.join("server.pem"),
        format!("{}{}", pki.server.pem, pki.intermediate.pem),
    )
    .unwrap();
    std::fs::write(d.join("server.key"), &pki.server.key_pem).unwrap();
    let listener = |name: &str, addr: &str| {
        format!(
            "[[ingress]]\nname = \"{name}\"\nlisten = \"{addr}\"\nidentity = \"server\"\nclient_auth = \"none\"\n  [[ingress.route]]\n  upstream = \"echo\"\n"
        )
    };
    let head = "version = 1\n[[identity]]\nname = \"server\"\ncert = \"server.pem\"\nkey = \"server.key\"\n";
    std::fs::write(
        d.join("c.toml"),
        format!("{head}{}", listener("a", "127.0.0.1:0")),
    )
    .unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let a = server.port("a");
    let root = pki.root.der.clone();
    let ok = |port: u16| {
        get(port, &root)
            .map(|(_, s)| s.contains(" 200 "))
            .unwrap_or(false)
    };
    assert!(ok(a));
    // Add b on a fixed port.
    let b = crate::free_port();
    replace(
        d,
        "c.toml",
        &format!(
            "{head}{}{}",
            listener("a", "127.0.0.1:0"),
            listener("b", &format!("127.0.0.1:{b}"))
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok(b) {
        assert!(Instant::now() < deadline, "listener b never came up");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ok(a), "a must keep serving");
    // A third listener on a port someone else holds: the reload is refused, a and b stay.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    replace(
        d,
        "c.toml",
        &format!(
            "{head}{}{}{}",
            listener("a", "127.0.0.1:0"),
            listener("b", &format!("127.0.0.1:{b}")),
            listener("c", &format!("127.0.0.1:{taken}"))
        ),
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(ok(a) && ok(b), "a refused reload must keep every listener");
    drop(squatter);
    // Remove a: it stops accepting; b goes on.
    replace(
        d,
        "c.toml",
        &format!("{head}{}", listener("b", &format!("127.0.0.1:{b}"))),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", a)).is_ok() {
        assert!(Instant::now() < deadline, "listener a was never removed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ok(b));
}
