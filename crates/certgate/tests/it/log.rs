//! The transparency log through `certgate serve` and the `certgate log` commands: the C2SP
//! note vector, appends by allowed mTLS writers only, checkpoints and proofs from tiles, fork
//! detection, and crash safety under SIGKILL.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certgate_testkit::{Spec, TestPki, self_signed, signed_by, tempdir};
use certgate_tlog::checkpoint::Checkpoint;
use certgate_tlog::merkle;
use certgate_tlog::note::{Note, Verifier, Verifiers};
use certgate_tlog::proof::TlogProof;
use certgate_tlog::tile::{self, Tile, TileReader};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::server::Serve;
use crate::tls::{Auth, config, connect};
use crate::{certgate, certgate_ok, text};

pub(crate) const ORIGIN: &str = "log.test.example/certgate";

fn write(d: &Path, name: &str, text: &str) {
    std::fs::write(d.join(name), text).unwrap();
}

/// PKI: server certificate, a writer ("publisher"), a stranger (verified, wrong name) and a
/// self-signed client.
pub(crate) fn setup() -> (tempfile::TempDir, TestPki) {
    let dir = tempdir();
    let d = dir.path();
    let pki = TestPki::new();
    write(d, "root.pem", &pki.root.pem);
    write(
        d,
        "server.pem",
        &format!("{}{}", pki.server.pem, pki.intermediate.pem),
    );
    write(d, "server.key", &pki.server.key_pem);
    for (name, cert) in [
        (
            "publisher",
            signed_by(&Spec::client("publisher"), &pki.intermediate),
        ),
        (
            "stranger",
            signed_by(&Spec::client("stranger"), &pki.intermediate),
        ),
    ] {
        write(
            d,
            &format!("{name}.pem"),
            &format!("{}{}", cert.pem, pki.intermediate.pem),
        );
        write(d, &format!("{name}.key"), &cert.key_pem);
    }
    let selfie = self_signed(&Spec::client("publisher"));
    write(d, "selfie.pem", &selfie.pem);
    write(d, "selfie.key", &selfie.key_pem);
    (dir, pki)
}

pub(crate) fn log_config(data_dir: &str) -> String {
    format!(
        r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "writers"
ca = ["root.pem"]
[log]
origin = "{ORIGIN}"
data_dir = "{data_dir}"
listen = "127.0.0.1:0"
identity = "server"
trust = "writers"
writers = [{{ cn = "publisher" }}]
"#
    )
}

pub(crate) fn vkey(d: &Path, dir: &str) -> String {
    std::fs::read_to_string(d.join(dir).join("log.vkey"))
        .unwrap()
        .trim()
        .to_owned()
}

/// `certgate log add FILE` to the log at `url` as the `publisher` writer; its output.
pub(crate) fn log_add(d: &Path, url: &str, file: &str) -> String {
    certgate_ok(
        d,
        [
            "log",
            "add",
            file,
            "--url",
            url,
            "--ca",
            "root.pem",
            "--cert",
            "publisher.pem",
            "--key",
            "publisher.key",
        ]
        .as_slice(),
    )
}

/// [`log_config`] for the log in `data_dir`, kept in the PostgreSQL database at `url`.
fn postgres_log_config(data_dir: &str, url: &str) -> String {
    log_config(data_dir).replace(
        "writers = [",
        &format!("storage = \"postgres\"\npostgres_url = \"{url}\"\nwriters = ["),
    )
}

/// One HTTP/1.1 request over a new mTLS connection; (status, body).
pub(crate) fn http(
    port: u16,
    cfg: &Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = connect(port, Arc::clone(cfg), Duration::from_secs(10))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // One write: a second small segment would wait for a delayed ACK (Nagle).
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    // A server that refuses early (413) may close before reading it all: read its answer anyway.
    let _ = s.write_all(&request);
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        // A peer that closes without close_notify after a complete response is fine.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e),
    }
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no response head"))?;
    let status = String::from_utf8_lossy(&out[9..12]).parse().unwrap_or(0);
    Ok((status, out[split + 4..].to_vec()))
}

pub(crate) fn client(d: &Path, who: &str) -> Arc<rustls::ClientConfig> {
    let root = certgate_pki::credential::parse_certificates(
        &std::fs::read(d.join("root.pem")).unwrap(),
        &certgate_pki::Origin::other("root"),
    )
    .unwrap()
    .remove(0);
    let auth = if who == "none" {
        Auth::None
    } else {
        let chain: Vec<CertificateDer<'static>> = certgate_pki::credential::parse_certificates(
            &std::fs::read(d.join(format!("{who}.pem"))).unwrap(),
            &certgate_pki::Origin::other(who),
        )
        .unwrap();
        let key = certgate_pki::credential::parse_private_key(
            &std::fs::read(d.join(format!("{who}.key"))).unwrap(),
            &certgate_pki::Origin::other(who),
            None,
        )
        .unwrap();
        Auth::Cert(
            chain,
            PrivateKeyDer::try_from(key.der.secret_der().to_vec()).unwrap(),
        )
    };
    config(&root, &[], auth)
}

#[test]
fn c2sp_note_vector_via_the_cli() {
    let dir = tempdir();
    let d = dir.path();
    let vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    let note = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
    write(d, "note", note);
    write(
        d,
        "tampered",
        &note.replace("example message", "exemplary message"),
    );
    write(d, "truncated", &note[..note.len() - 10]);
    let out = certgate_ok(d, ["log", "verify-note", "--vkey", vkey, "note"].as_slice());
    assert!(
        out.contains("verified: signed by example.com/foo+530d903a"),
        "{out}"
    );
    for (file, want) in [
        ("tampered", "is invalid"),
        ("truncated", "must end with a newline"),
    ] {
        let out = certgate(d, ["log", "verify-note", "--vkey", vkey, file].as_slice());
        assert_eq!(out.status.code(), Some(65), "{file}: {}", text(&out));
        assert!(text(&out).contains(want), "{file}: {}", text(&out));
    }
    let other = "other.example/key+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    let out = certgate(
        d,
        ["log", "verify-note", "--vkey", other, "note"].as_slice(),
    );
    assert!(out.status.code().unwrap_or(0) >= 64, "{}", text(&out));
    assert!(text(&out).contains("does not match"), "{}", text(&out));
}

#[test]
fn writers_append_clients_check_checkpoints_and_proofs() {
    let (dir, _pki) = setup();
    let d = dir.path();
    let out = certgate_ok(
        d,
        ["log", "init", "--origin", ORIGIN, "--dir", "logdata"].as_slice(),
    );
    assert!(
        out.contains("verifier key: log.test.example/certgate+"),
        "{out}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.join("logdata/log.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = certgate(
        d,
        ["log", "init", "--origin", ORIGIN, "--dir", "logdata"].as_slice(),
    );
    assert!(
        !again.status.success() && text(&again).contains("created once"),
        "{}",
        text(&again)
    );
    write(d, "c.toml", &log_config("logdata"));
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("log");
    let url = format!("https://localhost:{port}");
    let vk = vkey(d, "logdata");
    // Append through the CLI, as the allowed writer.
    for i in 0..300 {
        write(d, &format!("e{i}"), &format!("release {i}\n"));
    }
    let out = log_add(d, &url, "e0");
    assert!(out.contains("appended at index 0"), "{out}");
    // A writer the log refuses (403) is refused for good: exit 77, not "try again" (75).
    let refused = certgate(
        d,
        [
            "log",
            "add",
            "e1",
            "--url",
            &url,
            "--ca",
            "root.pem",
            "--cert",
            "stranger.pem",
            "--key",
            "stranger.key",
        ]
        .as_slice(),
    );
    assert_eq!(refused.status.code(), Some(77), "{}", text(&refused));
    assert!(text(&refused).contains("403"), "{}", text(&refused));
    let proof = TlogProof::parse(&std::fs::read(d.join("e0.tlog-proof")).unwrap()).unwrap();
    let keys = Verifiers(vec![Verifier::parse(&vk).unwrap()]);
    proof
        .verify(&merkle::leaf_hash(b"release 0\n"), ORIGIN, &keys)
        .unwrap();
    // Everyone else is refused: no certificate, an unverified one, a verified one not allowed.
    for (who, want) in [("none", 401), ("selfie", 403), ("stranger", 403)] {
        let (status, body) = http(port, &client(d, who), "POST", "/add", b"x").unwrap();
        assert_eq!(status, want, "{who}: {}", String::from_utf8_lossy(&body));
    }
    // Over-long entries are refused.
    let (status, _) = http(
        port,
        &client(d, "publisher"),
        "POST",
        "/add",
        &vec![b'x'; 70_000],
    )
    .unwrap();
    assert_eq!(status, 413);
    // The client stores the first checkpoint, then accepts a consistent larger one.
    let check = |state: &str| {
        certgate(
            d,
            [
                "log",
                "checkpoint",
                &url,
                "--ca",
                "root.pem",
                "--vkey",
                &vk,
                "--state",
                state,
                "--json",
            ]
            .as_slice(),
        )
    };
    let out = check("state");
    assert!(out.status.success(), "{}", text(&out));
    let publisher = client(d, "publisher");
    for i in 1..300 {
        let (status, _) = http(
            port,
            &publisher,
            "POST",
            "/add",
            format!("release {i}\n").as_bytes(),
        )
        .unwrap();
        assert_eq!(status, 200);
    }
    let out = check("state");
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["size"].as_u64(), v["previous_size"].as_u64()),
        (Some(300), Some(1))
    );
    // A policy that wants a witness's cosignature refuses this (unwitnessed) checkpoint.
    let witness = certgate_tlog::note::Signer::witness("witness.example", [7; 32])
        .unwrap()
        .verifier()
        .to_string();
    let out = certgate(
        d,
        [
            "log",
            "checkpoint",
            &url,
            "--ca",
            "root.pem",
            "--vkey",
            &vk,
            "--witness",
            &witness,
            "--state",
            "state",
        ]
        .as_slice(),
    );
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(
        text(&out).contains("0 of the required 1 witnesses"),
        "{}",
        text(&out)
    );
    // Proofs from tiles: an inclusion proof as a tlog-proof, and a consistency proof.
    let out = certgate_ok(
        d,
        [
            "log", "prove", "--url", &url, "--ca", "root.pem", "--vkey", &vk, "--index", "257",
        ]
        .as_slice(),
    );
    TlogProof::parse(out.as_bytes())
        .unwrap()
        .verify(&merkle::leaf_hash(b"release 257\n"), ORIGIN, &keys)
        .unwrap();
    let out = certgate_ok(
        d,
        [
            "log",
            "prove",
            "--url",
            &url,
            "--ca",
            "root.pem",
            "--vkey",
            &vk,
            "--consistency",
            "10",
            "299",
        ]
        .as_slice(),
    );
    assert!(out.starts_with("old 10 "), "{out}");
    // The read API's content types and caching.
    let anyone = client(d, "none");
    let (status, body) = http(port, &anyone, "GET", "/tile/0/000", b"").unwrap();
    assert_eq!((status, body.len()), (200, 8192));
    let (status, _) = http(port, &anyone, "GET", "/tile/0/x000/000", b"").unwrap();
    assert_eq!(status, 404);

    // Fork detection: a second log under the same origin and key, with different contents.
    certgate_ok(
        d,
        ["log", "init", "--origin", ORIGIN, "--dir", "forked"].as_slice(),
    );
    std::fs::copy(d.join("logdata/log.key"), d.join("forked/log.key")).unwrap();
    write(d, "f.toml", &log_config("forked"));
    let fork = Serve::start(d, "f.toml", 1);
    let fork_url = format!("https://localhost:{}", fork.port("log"));
    let forker = client(d, "publisher");
    for i in 0..400 {
        http(
            fork.port("log"),
            &forker,
            "POST",
            "/add",
            format!("evil {i}\n").as_bytes(),
        )
        .unwrap();
    }
    let out = certgate(
        d,
        [
            "log",
            "checkpoint",
            &fork_url,
            "--ca",
            "root.pem",
            "--vkey",
            &vk,
            "--state",
            "state",
        ]
        .as_slice(),
    );
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(text(&out).contains("NOT consistent"), "{}", text(&out));
    let evidence: Vec<_> = std::fs::read_dir(d.join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".conflict-"))
        .collect();
    assert_eq!(evidence.len(), 2, "{evidence:?}");
    // The stored checkpoint is unchanged: the honest log still checks out.
    assert!(check("state").status.success());
}

/// An acknowledged append: the entry, its index, the checkpoint it was proven against.
type Acked = (Vec<u8>, u64, String);

/// SIGKILL during a bounded append load: every acknowledged entry is there at its index after
/// a restart, the tree is consistent with every checkpoint handed out, and appends continue.
#[test]
fn crash_safety_under_sigkill() {
    let (dir, _pki) = setup();
    let d = dir.path();
    certgate_ok(
        d,
        ["log", "init", "--origin", ORIGIN, "--dir", "logdata"].as_slice(),
    );
    write(d, "c.toml", &log_config("logdata"));
    let mut server = Serve::start(d, "c.toml", 1);
    let port = server.port("log");
    let publisher = client(d, "publisher");
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut threads = Vec::new();
    for t in 0..8 {
        let (publisher, acked) = (Arc::clone(&publisher), Arc::clone(&acked));
        threads.push(std::thread::spawn(move || {
            for i in 0..10_000 {
                if Instant::now() > deadline {
                    break;
                }
                let entry = format!("crash test {t}-{i}").into_bytes();
                match http(port, &publisher, "POST", "/add", &entry) {
                    Ok((200, body)) => {
                        let p = TlogProof::parse(&body).unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .push((entry, p.index, p.checkpoint.to_string()));
                    }
                    _ => break,
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(700));
    server.signal("KILL");
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "too few appends before the kill: {}",
        acked.len()
    );
    let _ = server.wait_exit(Duration::from_secs(5));
    drop(server);
    // Restart on the same data.
    let server = Serve::start(d, "c.toml", 1);
    let port = server.port("log");
    let anyone = client(d, "none");
    let vk = Verifiers(vec![Verifier::parse(&vkey(d, "logdata")).unwrap()]);
    let (status, body) = http(port, &anyone, "GET", "/checkpoint", b"").unwrap();
    assert_eq!(status, 200);
    let (now, _) = Checkpoint::open(&body, ORIGIN, &vk).unwrap();
    let reader = TileReader::new(now.size, |t: &Tile| {
        let (status, body) = http(port, &anyone, "GET", &format!("/{}", t.path()), b"")
            .map_err(|e| certgate_tlog::Error::Tile(e.to_string()))?;
        if status != 200 {
            return Err(certgate_tlog::Error::Tile(format!(
                "{}: {status}",
                t.path()
            )));
        }
        Ok(body)
    });
    let mut bundles = std::collections::HashMap::new();
    let mut sizes = std::collections::BTreeMap::new();
    for (entry, index, note) in &acked {
        assert!(
            *index < now.size,
            "acknowledged index {index} is gone (size {})",
            now.size
        );
        let n = index / 256;
        let bundle = bundles.entry(n).or_insert_with(|| {
            let width = (now.size - n * 256).min(256);
            let t = Tile {
                level: None,
                index: n,
                width: width as u16,
            };
            http(port, &anyone, "GET", &format!("/{}", t.path()), b"")
                .unwrap()
                .1
        });
        let entries = tile::parse_bundle(bundle).unwrap();
        assert_eq!(
            entries[(index % 256) as usize],
            entry.as_slice(),
            "index {index}"
        );
        let cp = Checkpoint::parse(Note::parse(note.as_bytes()).unwrap().text()).unwrap();
        sizes.insert(cp.size, cp.root);
    }
    for (size, root) in &sizes {
        let proof = merkle::consistency_proof(*size, now.size, &reader).unwrap();
        merkle::verify_consistency(*size, now.size, root, &now.root, &proof)
            .unwrap_or_else(|e| panic!("checkpoint of size {size}: {e}"));
    }
    // Appends continue where the log left off.
    let (status, body) = http(
        port,
        &client(d, "publisher"),
        "POST",
        "/add",
        b"after the crash",
    )
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(TlogProof::parse(&body).unwrap().index, now.size);
}

/// Two `certgate serve` processes on one PostgreSQL log, eight concurrent writers on each:
/// every index given once, every proof verifies against a checkpoint signed by the log, the
/// checkpoints are consistent with each other, and both serve the same tiles.
#[test]
fn two_serve_instances_share_a_postgres_log() {
    let Some(pg) = certgate_testkit::Postgres::start() else {
        return;
    };
    let (dir, _pki) = setup();
    let d = dir.path();
    certgate_ok(
        d,
        ["log", "init", "--origin", ORIGIN, "--dir", "logdata"].as_slice(),
    );
    let config = postgres_log_config("logdata", &pg.url());
    write(d, "c.toml", &config);
    let (a, b) = (Serve::start(d, "c.toml", 1), Serve::start(d, "c.toml", 1));
    let ports = [a.port("log"), b.port("log")];
    let keys = Verifiers(vec![Verifier::parse(&vkey(d, "logdata")).unwrap()]);
    let writer = client(d, "publisher");
    let results = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for port in ports {
            for w in 0..8 {
                let (writer, results) = (Arc::clone(&writer), Arc::clone(&results));
                s.spawn(move || {
                    for i in 0..10 {
                        let entry = format!("port {port} writer {w} entry {i}");
                        let (code, body) =
                            http(port, &writer, "POST", "/add", entry.as_bytes()).unwrap();
                        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
                        results.lock().unwrap().push((entry, body));
                    }
                });
            }
        }
    });
    let results = results.lock().unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut checkpoints = Vec::new();
    for (entry, body) in results.iter() {
        let proof = TlogProof::parse(body).unwrap();
        let (cp, _) =
            Checkpoint::open(proof.checkpoint.to_string().as_bytes(), ORIGIN, &keys).unwrap();
        merkle::verify_inclusion(
            proof.index,
            cp.size,
            &merkle::leaf_hash(entry.as_bytes()),
            &proof.proof,
            &cp.root,
        )
        .unwrap();
        assert!(
            seen.insert(proof.index),
            "index {} given twice",
            proof.index
        );
        checkpoints.push(cp);
    }
    assert_eq!(seen.len(), 160);
    assert_eq!(*seen.iter().max().unwrap(), 159);
    // The newest checkpoint, from either instance, is consistent with every one handed out.
    let (code, latest) = http(ports[1], &writer, "GET", "/checkpoint", b"").unwrap();
    assert_eq!(code, 200);
    let (latest, _) = Checkpoint::open(&latest, ORIGIN, &keys).unwrap();
    assert_eq!(latest.size, 160);
    // The entries as served hash, at each size handed out, to that checkpoint's root: one tree.
    let (code, bundle) = http(ports[0], &writer, "GET", "/tile/entries/000.p/160", b"").unwrap();
    assert_eq!(code, 200);
    let entries = tile::parse_bundle(&bundle).unwrap();
    let mut tree = merkle::MemoryTree::new();
    let mut roots = vec![tree.root()];
    for e in &entries {
        tree.append(e);
        roots.push(tree.root());
    }
    assert_eq!(tree.root(), latest.root);
    for cp in &checkpoints {
        assert_eq!(
            roots[cp.size as usize], cp.root,
            "checkpoint of size {}",
            cp.size
        );
    }
    for path in [
        "/tile/0/000.p/160",
        "/checkpoint",
        "/tile/entries/000.p/160",
    ] {
        let from_a = http(ports[0], &writer, "GET", path, b"").unwrap();
        let from_b = http(ports[1], &writer, "GET", path, b"").unwrap();
        assert_eq!(from_a.0, 200, "{path}");
        assert_eq!(from_a, from_b, "{path}");
    }
}

/// `log migrate` copies a 10,000-entry embedded log into PostgreSQL and proves the copy (root
/// and signed checkpoint identical); run again, it only checks, and a row changed in the
/// database makes that check fail.
#[test]
fn migrate_copies_an_embedded_log_into_postgres_and_proves_it() {
    let Some(pg) = certgate_testkit::Postgres::start() else {
        return;
    };
    let psql = certgate_testkit::require_peer!("psql");
    let (dir, _pki) = setup();
    let d = dir.path();
    certgate_ok(
        d,
        ["log", "init", "--origin", ORIGIN, "--dir", "logdata"].as_slice(),
    );
    {
        use certgate_log::LogStorage as _;
        let store = certgate_log::Store::open(&d.join("logdata/log.redb")).unwrap();
        let signer = certgate_tlog::note::Signer::parse(
            &std::fs::read_to_string(d.join("logdata/log.key")).unwrap(),
        )
        .unwrap();
        for batch in 0..10 {
            let entries: Vec<Vec<u8>> = (0..1000)
                .map(|i| format!("entry {}", batch * 1000 + i).into_bytes())
                .collect();
            store
                .append_batch(batch * 1000, &entries, &mut |size, root| {
                    Ok(Checkpoint {
                        origin: ORIGIN.into(),
                        size,
                        root,
                        extensions: vec![],
                    }
                    .sign(&[&signer])?
                    .to_string())
                })
                .unwrap();
        }
    }
    let migrate = || {
        certgate(
            d,
            ["log", "migrate", "--from", "logdata", "--to", &pg.url()].as_slice(),
        )
    };
    let out = migrate();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("copied {ORIGIN}: 10000 entries; root ")),
        "{}",
        text(&out)
    );
    let out = migrate();
    assert!(text(&out).contains("checked"), "{}", text(&out));

    // The database serves the same log: a serve on it answers the same checkpoint.
    let config = postgres_log_config("logdata", &pg.url());
    write(d, "c.toml", &config);
    {
        let server = Serve::start(d, "c.toml", 1);
        let (code, served) = http(
            server.port("log"),
            &client(d, "none"),
            "GET",
            "/checkpoint",
            b"",
        )
        .unwrap();
        assert_eq!(code, 200);
        assert!(String::from_utf8_lossy(&served).contains("\n10000\n"));
    }

    // One entry changed in the database: the check fails, naming what does not match.
    let tamper = std::process::Command::new(psql)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            "-c",
        ])
        .arg("UPDATE certgate_log_entries SET entry = 'forged' WHERE idx = 5000")
        .output()
        .unwrap();
    assert!(tamper.status.success(), "{}", text(&tamper));
    let out = migrate();
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(
        text(&out).contains("the copy does not match"),
        "{}",
        text(&out)
    );
}

/// With `postgres_trust`, the log speaks TLS to PostgreSQL and verifies the server's
/// certificate: a database whose certificate the trust does not cover is refused at start.
#[test]
fn a_postgres_log_over_verified_tls() {
    let (dir, pki) = setup();
    let d = dir.path();
    let chain = format!("{}{}", pki.server.pem, pki.intermediate.pem);
    let Some(pg) = certgate_testkit::Postgres::start_tls(&chain, &pki.server.key_pem) else {
        return;
    };
    certgate_ok(
        d,
        ["log", "init", "--origin", ORIGIN, "--dir", "logdata"].as_slice(),
    );
    let url = format!(
        "postgres://postgres@localhost:{}/postgres?hostaddr=127.0.0.1",
        pg.port
    );
    let with_trust = |trust: &str| {
        log_config("logdata").replace(
            "writers = [",
            &format!(
                "storage = \"postgres\"\npostgres_url = \"{url}\"\npostgres_trust = \"{trust}\"\nwriters = ["
            ),
        )
    };
    write(d, "c.toml", &with_trust("writers"));
    {
        let server = Serve::start(d, "c.toml", 1);
        let (code, body) = http(
            server.port("log"),
            &client(d, "publisher"),
            "POST",
            "/add",
            b"over TLS",
        )
        .unwrap();
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    }
    // A trust that does not cover the database's certificate: refused, and said why.
    let other =
        with_trust("strangers") + "[[trust]]\nname = \"strangers\"\nca = [\"selfie.pem\"]\n";
    write(d, "bad.toml", &other);
    let out = certgate(d, ["serve", "--config", "bad.toml"].as_slice());
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(text(&out).contains("log.postgres_url"), "{}", text(&out));
}

/// One of two serve processes on a PostgreSQL log is killed (SIGKILL) in the middle of
/// appends: every entry either process acknowledged is at its index, the tree is one tree, and
/// the next append gets index = size.
#[test]
fn a_killed_instance_loses_no_acknowledged_entry() {
    let Some(pg) = certgate_testkit::Postgres::start() else {
        return;
    };
    let (dir, _pki) = setup();
    let d = dir.path();
    certgate_ok(
        d,
        ["log", "init", "--origin", ORIGIN, "--dir", "logdata"].as_slice(),
    );
    let config = postgres_log_config("logdata", &pg.url());
    write(d, "c.toml", &config);
    let (a, b) = (Serve::start(d, "c.toml", 1), Serve::start(d, "c.toml", 1));
    let ports = [a.port("log"), b.port("log")];
    let writer = client(d, "publisher");
    let acked = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for port in ports {
            for w in 0..4 {
                let (writer, acked) = (Arc::clone(&writer), Arc::clone(&acked));
                s.spawn(move || {
                    for i in 0..60 {
                        let entry = format!("port {port} writer {w} entry {i}");
                        if let Ok((200, body)) =
                            http(port, &writer, "POST", "/add", entry.as_bytes())
                        {
                            let index = TlogProof::parse(&body).unwrap().index;
                            acked.lock().unwrap().push((entry, index));
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                });
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        a.signal("KILL");
    });
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > 240,
        "only {} appends went through",
        acked.len()
    );
    let (code, cp) = http(ports[1], &writer, "GET", "/checkpoint", b"").unwrap();
    assert_eq!(code, 200);
    let keys = Verifiers(vec![Verifier::parse(&vkey(d, "logdata")).unwrap()]);
    let (cp, _) = Checkpoint::open(&cp, ORIGIN, &keys).unwrap();
    let (code, bundle) = http(
        ports[1],
        &writer,
        "GET",
        &if cp.size >= 256 {
            "/tile/entries/000".to_owned()
        } else {
            format!("/tile/entries/000.p/{}", cp.size)
        },
        b"",
    )
    .unwrap();
    assert_eq!(code, 200);
    let mut entries: Vec<Vec<u8>> = tile::parse_bundle(&bundle)
        .unwrap()
        .iter()
        .map(|e| e.to_vec())
        .collect();
    if cp.size > 256 {
        let (code, rest) = http(
            ports[1],
            &writer,
            "GET",
            &format!("/tile/entries/001.p/{}", cp.size - 256),
            b"",
        )
        .unwrap();
        assert_eq!(code, 200);
        entries.extend(
            tile::parse_bundle(&rest)
                .unwrap()
                .iter()
                .map(|e| e.to_vec()),
        );
    }
    let mut tree = merkle::MemoryTree::new();
    for e in &entries {
        tree.append(e);
    }
    assert_eq!(tree.root(), cp.root, "the entries are the signed tree");
    for (entry, index) in acked.iter() {
        assert_eq!(
            entries[*index as usize],
            entry.as_bytes(),
            "acknowledged entry at {index}"
        );
    }
    let (code, body) = http(ports[1], &writer, "POST", "/add", b"after the kill").unwrap();
    assert_eq!(code, 200);
    assert_eq!(TlogProof::parse(&body).unwrap().index, cp.size);
}
