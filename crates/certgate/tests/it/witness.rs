//! Witnessing through `certgate serve`: three `[witness]` processes, a `[log]` that submits its
//! checkpoints to them with a quorum of two while one is down, a forked log (same origin and
//! key, other entries) that gets no cosignature, and a witness that keeps its state across a
//! restart and refuses a rollback.

use std::path::Path;
use std::time::Duration;

use certgate_tlog::proof::TlogProof;

use crate::log::{ORIGIN, client, http, log_config, setup, vkey};
use crate::revocation::eventually;
use crate::server::Serve;
use crate::{certgate, certgate_ok, text};

fn witness_config(n: u32, log_key: &str) -> String {
    format!(
        r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[witness]
listen = "127.0.0.1:0"
identity = "server"
key = "w{n}.key"
state_dir = "w{n}-state"
logs = ["{log_key}"]
"#
    )
}

fn add(d: &Path, port: u16, file: &str, body: &str) -> String {
    std::fs::write(d.join(file), body).unwrap();
    crate::log::log_add(d, &format!("https://localhost:{port}"), file)
}

/// `log checkpoint` against the log at `port` with all three witness keys and `quorum`.
fn checkpoint(d: &Path, port: u16, log_key: &str, quorum: &str, state: &str) -> (bool, String) {
    let out = certgate(
        d,
        [
            "log",
            "checkpoint",
            &format!("https://localhost:{port}"),
            "--ca",
            "root.pem",
            "--vkey",
            log_key,
            "--witness",
            "w1.key.vkey",
            "--witness",
            "w2.key.vkey",
            "--witness",
            "w3.key.vkey",
            "--quorum",
            quorum,
            "--state",
            state,
        ]
        .as_slice(),
    );
    (out.status.success(), text(&out))
}

fn log_with_witnesses(data: &str, ports: [u16; 3], wkeys: &[String; 3]) -> String {
    let mut c = log_config(data);
    c.push_str("witness_quorum = 2\n");
    for (p, k) in ports.iter().zip(wkeys) {
        c.push_str(&format!(
            "[[log.witness]]\nurl = \"https://localhost:{p}\"\nvkey = \"{k}\"\ntrust = \"writers\"\n"
        ));
    }
    c
}

#[test]
fn witnesses_cosign_a_growing_log_refuse_a_fork_and_keep_their_state() {
    let (dir, _pki) = setup();
    let d = dir.path();
    certgate_ok(
        d,
        ["log", "init", "--origin", ORIGIN, "--dir", "logdata"].as_slice(),
    );
    let log_key = vkey(d, "logdata");
    let mut wkeys = Vec::new();
    for n in 1..=3 {
        let out = certgate_ok(
            d,
            format!("log witness-key --name w{n}.example --out w{n}.key").as_str(),
        );
        assert!(out.contains("verifier key: w"), "{out}");
        wkeys.push(
            std::fs::read_to_string(d.join(format!("w{n}.key.vkey")))
                .unwrap()
                .trim()
                .to_owned(),
        );
        std::fs::write(d.join(format!("w{n}.toml")), witness_config(n, &log_key)).unwrap();
    }
    let wkeys: [String; 3] = wkeys.try_into().unwrap();
    let w1 = Serve::start(d, "w1.toml", 1);
    let w2 = Serve::start(d, "w2.toml", 1);
    // The third witness hangs: its port accepts connections and never answers (the log gives
    // up on it after 10 s, but publishes as soon as the other two made the quorum).
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ports = [
        w1.port("witness"),
        w2.port("witness"),
        hole.local_addr().unwrap().port(),
    ];
    std::fs::write(
        d.join("log.toml"),
        log_with_witnesses("logdata", ports, &wkeys),
    )
    .unwrap();
    let log = Serve::start(d, "log.toml", 1);
    let port = log.port("log");
    add(d, port, "e1", "entry one\n");
    let first = TlogProof::parse(&std::fs::read(d.join("e1.tlog-proof")).unwrap()).unwrap();
    add(d, port, "e2", "entry two\n");
    add(d, port, "e3", "entry three\n");

    // The served checkpoint reaches size 3 with two cosignatures, which verify under a policy
    // with quorum 2 of the three witnesses (but not 3: one is down).
    eventually(
        "the checkpoint of size 3 is witnessed",
        Duration::from_secs(6),
        || {
            let (ok, out) = checkpoint(d, port, &log_key, "2", "client-state");
            ok && out.contains(": size 3,")
        },
    );
    let (ok, out) = checkpoint(d, port, &log_key, "3", "client-state-3");
    assert!(!ok, "a quorum of 3 with one witness down: {out}");

    // A fork: the same origin and key, other entries. The witnesses refuse it, so its
    // checkpoint never gets cosigned; a client that saw the real log refuses it too.
    certgate_ok(
        d,
        ["log", "init", "--origin", ORIGIN, "--dir", "forkdata"].as_slice(),
    );
    std::fs::copy(d.join("logdata/log.key"), d.join("forkdata/log.key")).unwrap();
    std::fs::write(
        d.join("fork.toml"),
        log_with_witnesses("forkdata", ports, &wkeys),
    )
    .unwrap();
    let fork = Serve::start(d, "fork.toml", 1);
    let fork_port = fork.port("log");
    for i in 0..5 {
        add(
            d,
            fork_port,
            &format!("f{i}"),
            &format!("forked entry {i}\n"),
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    // No witness cosigned the fork, so it serves no checkpoint at all.
    let (code, body) = http(fork_port, &client(d, "none"), "GET", "/checkpoint", b"").unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("quorum"), "{body}");
    let (ok, out) = checkpoint(d, fork_port, &log_key, "1", "fork-client");
    assert!(!ok, "{out}");
    let (ok, out) = checkpoint(d, fork_port, &log_key, "0", "client-state");
    assert!(!ok && out.contains("503"), "{out}");
    drop(fork);

    // The real log goes on growing and stays witnessed.
    add(d, port, "e4", "entry four\n");
    eventually(
        "the checkpoint of size 4 is witnessed",
        Duration::from_secs(6),
        || {
            let (ok, out) = checkpoint(d, port, &log_key, "2", "client-state");
            ok && out.contains(": size 4,")
        },
    );

    // A restarted log serves its last witnessed checkpoint at once, never an unwitnessed one.
    drop(log);
    let log = Serve::start(d, "log.toml", 1);
    let port = log.port("log");
    let (code, body) = http(port, &client(d, "none"), "GET", "/checkpoint", b"").unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("w1.example") || body.contains("w2.example"),
        "{body}"
    );
    // One state directory, one witness process.
    let out = certgate(d, ["serve", "--config", "w2.toml"].as_slice());
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(
        text(&out).contains("in use by another witness process"),
        "{}",
        text(&out)
    );
    // One witness counts once toward the quorum.
    let twice = log_with_witnesses(
        "logdata",
        [ports[0], ports[0], ports[1]],
        &[wkeys[0].clone(), wkeys[0].clone(), wkeys[1].clone()],
    );
    std::fs::write(d.join("twice.toml"), twice).unwrap();
    let out = certgate(d, ["check", "--config", "twice.toml"].as_slice());
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("this witness is listed already"),
        "{}",
        text(&out)
    );
    let _ = port;

    // A restarted witness keeps its state: the first checkpoint (size 1) is a rollback, answered
    // 409 with the size it has; the same for a request that claims it has nothing.
    drop(w1);
    let w1 = Serve::start(d, "w1.toml", 1);
    let request = certgate_log::witness::request_body(1, &[], &first.checkpoint.to_string());
    let (code, body) = http(
        w1.port("witness"),
        &client(d, "none"),
        "POST",
        "/add-checkpoint",
        request.as_bytes(),
    )
    .unwrap();
    assert_eq!((code, String::from_utf8_lossy(&body).trim()), (409, "4"));
    let request = certgate_log::witness::request_body(0, &[], &first.checkpoint.to_string());
    let (code, _) = http(
        w1.port("witness"),
        &client(d, "none"),
        "POST",
        "/add-checkpoint",
        request.as_bytes(),
    )
    .unwrap();
    assert_eq!(code, 409);
    // A stranger's checkpoint: unknown origin.
    let (code, body) = http(
        w1.port("witness"),
        &client(d, "none"),
        "POST",
        "/add-checkpoint",
        b"old 0\n\nother.example/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 other.example/log AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    )
    .unwrap();
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
}
