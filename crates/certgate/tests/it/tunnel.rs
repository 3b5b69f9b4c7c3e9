//! TCP tunnels: TLS in, TCP out, policy after the handshake, and PROXY protocol v2 headers read
//! back by an independent parser (the `ppp` crate).

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use certgate_testkit::{Spec, TestPki, self_signed, tempdir};

use crate::server::Serve;

/// A target that reads one PROXY v2 header per connection, reports it, then echoes the stream.
fn target() -> (u16, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut head = [0u8; 16];
                if s.read_exact(&mut head).is_err() {
                    return;
                }
                let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
                let mut rest = vec![0u8; len];
                if s.read_exact(&mut rest).is_err() {
                    return;
                }
                let mut header = head.to_vec();
                header.extend_from_slice(&rest);
                let _ = tx.send(header);
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, rx)
}

/// Connects with rustls (optionally presenting `cert`), sends `ping`, returns what comes back.
fn ping(
    port: u16,
    root: &[u8],
    client: Option<(&certgate_testkit::Cert, &[u8])>,
) -> std::io::Result<Vec<u8>> {
    let auth = match client {
        None => crate::tls::Auth::None,
        Some((cert, intermediate)) => crate::tls::Auth::Cert(
            vec![
                rustls_pki_types::CertificateDer::from(cert.der.clone()),
                rustls_pki_types::CertificateDer::from(intermediate.to_vec()),
            ],
            rustls_pki_types::PrivateKeyDer::try_from(cert.key.serialize_der()).unwrap(),
        ),
    };
    let config = crate::tls::config(root, &[&rustls::version::TLS13], auth);
    let mut tls = crate::tls::connect(port, config, Duration::from_secs(10))?;
    tls.write_all(b"ping")?;
    tls.flush()?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf)?;
    Ok(buf.to_vec())
}

#[test]
fn tls_full_proxy_header_carries_the_verified_certificate() {
    let dir = tempdir();
    let d = dir.path();
    let pki = TestPki::new();
    std::fs::write(d.join("root.pem"), &pki.root.pem).unwrap();
    std::fs::write(
        d.join("server.pem"),
        format!("{}{}", pki.server.pem, pki.intermediate.pem),
    )
    .unwrap();
    std::fs::write(d.join("server.key"), &pki.server.key_pem).unwrap();
    let (target_port, headers) = target();
    let config = format!(
        r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["root.pem"]
[[tunnel]]
name = "full"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
target = "127.0.0.1:{target_port}"
proxy_protocol = "tls-full"
[[tunnel]]
name = "verified-only"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
target = "127.0.0.1:{target_port}"
proxy_protocol = "conn"
require_verified = true
"#
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 2);

    // A verified client through the tls-full tunnel.
    let echoed = ping(
        server.port("full"),
        &pki.root.der,
        Some((&pki.client, &pki.intermediate.der)),
    )
    .unwrap();
    assert_eq!(echoed, b"ping");
    let raw = headers.recv_timeout(Duration::from_secs(10)).unwrap();
    let header = ppp::v2::Header::try_from(raw.as_slice()).expect("ppp parses the header");
    assert_eq!(header.command, ppp::v2::Command::Proxy);
    match header.addresses {
        ppp::v2::Addresses::IPv4(a) => {
            assert_eq!(a.source_address, std::net::Ipv4Addr::LOCALHOST);
            assert_eq!(a.destination_port, server.port("full"));
        }
        other => panic!("addresses {other:?}"),
    }
    let tlvs: Vec<(u8, Vec<u8>)> = header
        .tlvs()
        .map(|t| t.unwrap())
        .map(|t| (t.kind, t.value.to_vec()))
        .collect();
    let get = |kind: u8| {
        tlvs.iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get(0x02).as_deref(),
        Some(&b"localhost"[..]),
        "AUTHORITY = SNI"
    );
    let ssl = get(0x20).expect("PP2_TYPE_SSL");
    assert_eq!(
        ssl[0],
        0x01 | 0x02 | 0x04,
        "client flags: SSL, CERT_CONN, CERT_SESS"
    );
    assert_eq!(
        &ssl[1..5],
        &[0, 0, 0, 0],
        "verify = 0: presented and verified"
    );
    // Sub-TLVs, parsed by hand from the SSL value.
    let mut subs = Vec::new();
    let mut rest = &ssl[5..];
    while rest.len() >= 3 {
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        subs.push((rest[0], rest[3..3 + len].to_vec()));
        rest = &rest[3 + len..];
    }
    let sub = |kind: u8| {
        subs.iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(sub(0x21).as_deref(), Some(&b"TLSv1.3"[..]));
    assert!(sub(0x23).is_some_and(|c| c.starts_with(b"TLS_")), "cipher");
    assert_eq!(sub(0x22).as_deref(), Some(&b"alice"[..]), "CN");
    assert_eq!(
        sub(0x28).as_deref(),
        Some(pki.client.der.as_slice()),
        "DER client certificate"
    );

    // A client without a certificate: the SSL TLV says so (no cert flags, verify non-zero).
    assert_eq!(
        ping(server.port("full"), &pki.root.der, None).unwrap(),
        b"ping"
    );
    let raw = headers.recv_timeout(Duration::from_secs(10)).unwrap();
    let header = ppp::v2::Header::try_from(raw.as_slice()).unwrap();
    let ssl = header
        .tlvs()
        .map(|t| t.unwrap())
        .find(|t| t.kind == 0x20)
        .unwrap()
        .value
        .to_vec();
    assert_eq!(ssl[0], 0x01);
    assert_ne!(&ssl[1..5], &[0, 0, 0, 0]);
    assert!(!header.tlvs().any(|t| t.unwrap().kind == 0x28));

    // Policy: a self-signed certificate on a require_verified tunnel is closed after the
    // handshake and never reaches the target.
    let stranger = self_signed(&Spec::client("stranger"));
    let refused = ping(
        server.port("verified-only"),
        &pki.root.der,
        Some((&stranger, &stranger.der)),
    );
    assert!(
        refused.is_err(),
        "an unverified client got through: {refused:?}"
    );
    assert!(
        headers.recv_timeout(Duration::from_millis(500)).is_err(),
        "the refused client reached the target"
    );
    // The verified client does, with a `conn` header (addresses only, no TLVs).
    assert_eq!(
        ping(
            server.port("verified-only"),
            &pki.root.der,
            Some((&pki.client, &pki.intermediate.der))
        )
        .unwrap(),
        b"ping"
    );
    let raw = headers.recv_timeout(Duration::from_secs(10)).unwrap();
    let header = ppp::v2::Header::try_from(raw.as_slice()).unwrap();
    assert_eq!(header.tlvs().count(), 0);
}
