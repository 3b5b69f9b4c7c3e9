//! Certificates forwarded by a real front proxy: nginx terminates mTLS with
//! `ssl_verify_client optional_no_ca` and forwards `$ssl_client_escaped_cert`; certgate trusts the
//! header only from nginx's own mTLS identity and re-verifies every certificate. Also nginx
//! `auth_request` against certgate's forward-auth route.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use certgate_testkit::{Spec, require_peer, signed_by, tempdir};

use crate::ingress::write_pki;
use crate::server::Serve;

use crate::{Peer, free_port};

fn start_nginx(nginx: &Path, d: &Path, port: u16, certgate: u16) -> Peer {
    let dir = d.display();
    let upstream = format!(
        "proxy_pass https://127.0.0.1:{certgate}; proxy_ssl_certificate {dir}/nginx.pem; proxy_ssl_certificate_key {dir}/nginx.key; \
         proxy_ssl_name localhost; proxy_ssl_server_name on; proxy_ssl_trusted_certificate {dir}/root.pem; proxy_ssl_verify on; \
         proxy_set_header Host localhost; proxy_set_header X-SSL-Client-Escaped-Cert $ssl_client_escaped_cert;"
    );
    let server = format!(
        r#"
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {dir}/server.pem;
    ssl_certificate_key {dir}/server.key;
    ssl_verify_client optional_no_ca;
    location / {{ {upstream} }}
    location = /protected {{ auth_request /auth; auth_request_set $who $upstream_http_x_client_subject; add_header X-Who $who; default_type text/plain; alias {dir}/protected.txt; }}
    location = /auth {{ internal; proxy_pass_request_body off; proxy_set_header Content-Length ""; {upstream} }}
  }}"#
    );
    std::fs::write(d.join("protected.txt"), "protected ok\n").unwrap();
    let peer = crate::start_nginx(nginx, d, &server);
    crate::wait_port("nginx", port);
    peer
}

#[test]
fn nginx_forwards_certificates_that_certgate_reverifies() {
    let nginx = require_peer!("nginx");
    let curl_bin = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    let pki = write_pki(d);
    let front = signed_by(&Spec::client("nginx-front"), &pki.intermediate);
    std::fs::write(
        d.join("nginx.pem"),
        format!("{}{}", front.pem, pki.intermediate.pem),
    )
    .unwrap();
    std::fs::write(d.join("nginx.key"), &front.key_pem).unwrap();
    std::fs::write(d.join("int.pem"), &pki.intermediate.pem).unwrap();
    let config = r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["root.pem"]
intermediates = ["int.pem"]
crl = ["int.crl"]
[[ingress]]
name = "app"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
forward = ["certgate"]
  [[ingress.route]]
  upstream = "echo"
  require_verified = true
  forwarded_cert = { format = "nginx", trusted_proxy_allow = [{ cn = "nginx-front" }], on_untrusted = "reject" }
  [[ingress.route]]
  path = "/auth"
  upstream = "forward-auth"
  require_verified = true
  allow = [{ cn = "alice" }]
  forwarded_cert = { format = "nginx", trusted_proxy_allow = [{ cn = "nginx-front" }] }
"#;
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let certgate = server.port("app");
    let port = free_port();
    let _nginx = start_nginx(&nginx, d, port, certgate);
    let get = |client: &str, path: &str, target: u16, extra: &[&str]| {
        crate::https_get(&curl_bin, d, target, path, client, extra)
    };
    // Through nginx: the certificate is re-verified by certgate.
    let (code, body) = get("good", "/", port, &[]);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"x-client-verify\": \"SUCCESS\""), "{body}");
    assert!(
        body.contains("\"x-client-subject\": \"CN=alice\""),
        "{body}"
    );
    assert!(
        body.contains("\"x-client-forwarded-by\": \"127.0.0.1 (CN=nginx-front)\""),
        "{body}"
    );
    // nginx's optional_no_ca forgives unknown issuers but still refuses expired certificates and
    // wrong purposes itself (400, "The SSL certificate error"); the rest reaches certgate, which
    // re-verifies: unknown issuer and revocation (nginx has no CRL here) are caught there.
    for client in ["expired", "wrong-eku"] {
        let (code, body) = get(client, "/", port, &[]);
        assert_eq!(code, "400", "{client}: {body}");
        assert!(
            body.contains("The SSL certificate error"),
            "{client}: {body}"
        );
    }
    for (client, reason) in [("self-signed", "unknown_issuer"), ("revoked", "revoked")] {
        let (code, body) = get(client, "/", port, &[]);
        assert_eq!(code, "403", "{client}: {body}");
        assert_eq!(
            body,
            format!("the client certificate is not verified ({reason})\n"),
            "{client}"
        );
    }
    let (code, body) = get("none", "/", port, &[]);
    assert_eq!(
        (code.as_str(), body.as_str()),
        ("401", "a client certificate is required\n")
    );
    // Straight to certgate, with the header nginx would send: rejected (on_untrusted = reject),
    // even when the direct client has a valid certificate of its own.
    let pem = std::fs::read_to_string(d.join("good.pem")).unwrap();
    let forged = format!(
        "X-SSL-Client-Escaped-Cert: {}",
        percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC)
    );
    let (code, body) = get("none", "/", certgate, &["-H", &forged]);
    assert_eq!(code, "400", "{body}");
    assert!(
        body.contains("accepted only from a trusted front proxy"),
        "{body}"
    );
    let (code, body) = get("good", "/", certgate, &["-H", &forged]);
    assert_eq!(code, "400", "{body}");
    // nginx auth_request against the forward-auth route.
    let (code, body) = get("good", "/protected", port, &[]);
    assert_eq!((code.as_str(), body.as_str()), ("200", "protected ok\n"));
    let (code, _) = get("self-signed", "/protected", port, &[]);
    assert_eq!(code, "403");
    let (code, _) = get("none", "/protected", port, &[]);
    assert_eq!(code, "401");
}

#[test]
fn haproxy_forwards_base64_der_that_certgate_reverifies() {
    let haproxy = require_peer!("haproxy");
    let curl_bin = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    let pki = write_pki(d);
    let front = signed_by(&Spec::client("haproxy-front"), &pki.intermediate);
    // HAProxy wants certificate chain and key in one file.
    std::fs::write(
        d.join("front.pem"),
        format!("{}{}{}", front.pem, pki.intermediate.pem, front.key_pem),
    )
    .unwrap();
    std::fs::write(
        d.join("hp-server.pem"),
        format!(
            "{}{}",
            std::fs::read_to_string(d.join("server.pem")).unwrap(),
            pki.server.key_pem
        ),
    )
    .unwrap();
    std::fs::write(d.join("int.pem"), &pki.intermediate.pem).unwrap();
    let config = r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["root.pem"]
intermediates = ["int.pem"]
crl = ["int.crl"]
[[ingress]]
name = "app"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "request"
trust = "clients"
forward = ["certgate"]
  [[ingress.route]]
  upstream = "echo"
  require_verified = true
  forwarded_cert = { format = "base64-der", header = "X-Client-Cert-DER", trusted_proxy_allow = [{ cn = "haproxy-front" }] }
"#;
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 1);
    let port = free_port();
    let dir_s = d.display();
    let hp = format!(
        r#"
defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:{port} ssl crt {dir_s}/hp-server.pem ca-file {dir_s}/root.pem verify optional ca-ignore-err all crt-ignore-err all
  http-request del-header X-Client-Cert-DER
  http-request set-header X-Client-Cert-DER %[ssl_c_der,base64] if {{ ssl_c_used }}
  default_backend be
backend be
  server certgate 127.0.0.1:{} ssl crt {dir_s}/front.pem ca-file {dir_s}/root.pem verify required sni str(localhost) verifyhost localhost
"#,
        server.port("app")
    );
    std::fs::write(d.join("haproxy.cfg"), hp).unwrap();
    let child = Command::new(&haproxy)
        .args(["-db", "-f", &d.join("haproxy.cfg").display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let _haproxy = Peer(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let get = |client: &str| crate::https_get(&curl_bin, d, port, "/", client, &[]);
    let (code, body) = get("good");
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"x-client-verify\": \"SUCCESS\""), "{body}");
    assert!(
        body.contains("\"x-client-forwarded-by\": \"127.0.0.1 (CN=haproxy-front)\""),
        "{body}"
    );
    // HAProxy was told to ignore every verification error: certgate catches them all.
    for (client, reason) in [
        ("self-signed", "unknown_issuer"),
        ("expired", "expired"),
        ("revoked", "revoked"),
        ("wrong-eku", "wrong_usage"),
    ] {
        let (code, body) = get(client);
        assert_eq!(code, "403", "{client}: {body}");
        assert_eq!(
            body,
            format!("the client certificate is not verified ({reason})\n"),
            "{client}"
        );
    }
    let (code, body) = get("none");
    assert_eq!(
        (code.as_str(), body.as_str()),
        ("401", "a client certificate is required\n")
    );
    // A client without a certificate sends a valid one's public certificate in the header:
    // HAProxy deletes client-sent copies, so certgate never sees it (a certificate is public;
    // only the front proxy's handshake proved that its holder has the key).
    use base64::Engine as _;
    let forged = format!(
        "X-Client-Cert-DER: {}",
        base64::engine::general_purpose::STANDARD.encode(&pki.client.der)
    );
    let (code, body) = crate::https_get(&curl_bin, d, port, "/", "none", &["-H", &forged]);
    assert_eq!(
        (code.as_str(), body.as_str()),
        ("401", "a client certificate is required\n"),
        "a client-sent X-Client-Cert-DER was believed"
    );
}

/// An ALB-style front: the load balancer (here, the test client on 127.0.0.1) sends the headers
/// AWS ALB sends, in passthrough mode (`X-Amzn-Mtls-Clientcert`, the whole chain) and in verify
/// mode (`X-Amzn-Mtls-Clientcert-Leaf` plus the informational `-Subject`, `-Issuer`, ...), each
/// URL-encoded with `+ = /` left as they are. The section is set once for the listener.
#[test]
fn alb_style_headers_are_reverified() {
    let curl_bin = require_peer!("curl");
    let dir = tempdir();
    let d = dir.path();
    let pki = write_pki(d);
    std::fs::write(d.join("int.pem"), &pki.intermediate.pem).unwrap();
    let config = r#"version = 1
[[identity]]
name = "server"
cert = "server.pem"
key = "server.key"
[[trust]]
name = "clients"
ca = ["root.pem"]
intermediates = ["int.pem"]
crl = ["int.crl"]
[[ingress]]
name = "alb"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "none"
trust = "clients"
forward = ["certgate"]
forwarded_cert = { format = "aws-alb", trusted_proxies = ["127.0.0.1/32"] }
  [[ingress.route]]
  upstream = "echo"
  require_verified = true
  [[ingress.route]]
  path = "/rfc9440"
  upstream = "echo"
  require_verified = true
  forwarded_cert = { format = "rfc9440", trusted_proxies = ["127.0.0.1/32"] }
[[ingress]]
name = "elsewhere"
listen = "127.0.0.1:0"
identity = "server"
client_auth = "none"
trust = "clients"
forward = ["certgate"]
forwarded_cert = { format = "aws-alb", trusted_proxies = ["10.0.0.0/16"] }
  [[ingress.route]]
  upstream = "echo"
"#;
    std::fs::write(d.join("c.toml"), config).unwrap();
    let server = Serve::start(d, "c.toml", 2);
    // ALB's encoding: URL-encoded PEM with `+`, `=` and `/` as safe characters.
    const ALB: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'+')
        .remove(b'=')
        .remove(b'/')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let enc = |pem: &str| percent_encoding::utf8_percent_encode(pem, ALB).to_string();
    let chain = |name: &str| {
        let pem = std::fs::read_to_string(d.join(format!("{name}.pem"))).unwrap();
        format!("{pem}{}", pki.root.pem)
    };
    let leaf = |name: &str| {
        let pem = std::fs::read_to_string(d.join(format!("{name}.pem"))).unwrap();
        let end = pem.find("-----END CERTIFICATE-----").unwrap() + 25;
        pem[..end].to_owned()
    };
    let get = |port: u16, headers: &[String]| {
        let extra: Vec<&str> = headers.iter().flat_map(|h| ["-H", h.as_str()]).collect();
        crate::https_get(&curl_bin, d, port, "/", "none", &extra)
    };
    let alb = server.port("alb");
    let passthrough = |name: &str| format!("X-Amzn-Mtls-Clientcert: {}", enc(&chain(name)));
    let verify_mode = |name: &str| {
        vec![
            format!("X-Amzn-Mtls-Clientcert-Leaf: {}", enc(&leaf(name))),
            "X-Amzn-Mtls-Clientcert-Subject: CN=mallory".to_owned(),
            "X-Amzn-Mtls-Clientcert-Serial-Number: 01".to_owned(),
        ]
    };
    assert!(
        passthrough("good").contains('+') || passthrough("good").contains('/'),
        "the encoding keeps base64 characters as they are"
    );
    for headers in [vec![passthrough("good")], verify_mode("good")] {
        let (code, body) = get(alb, &headers);
        assert_eq!(code, "200", "{body}");
        assert!(body.contains("\"x-client-verify\": \"SUCCESS\""), "{body}");
        assert!(
            body.contains("\"x-client-subject\": \"CN=alice\""),
            "{body}"
        );
        assert!(
            body.contains("\"x-client-forwarded-by\": \"127.0.0.1\""),
            "{body}"
        );
        // ALB's informational headers never reach the upstream: only certgate's own say who.
        assert!(!body.to_ascii_lowercase().contains("x-amzn"), "{body}");
    }
    for (client, reason) in [
        ("self-signed", "unknown_issuer"),
        ("expired", "expired"),
        ("revoked", "revoked"),
        ("wrong-eku", "wrong_usage"),
    ] {
        for headers in [vec![passthrough(client)], verify_mode(client)] {
            let (code, body) = get(alb, &headers);
            assert_eq!(code, "403", "{client}: {body}");
            assert_eq!(
                body,
                format!("the client certificate is not verified ({reason})\n"),
                "{client}"
            );
        }
    }
    // Both modes at once is ambiguous.
    let mut both = verify_mode("good");
    both.push(passthrough("good"));
    let (code, body) = get(alb, &both);
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("both `x-amzn-mtls-clientcert`"), "{body}");
    // A mangled value names the header and what is wrong.
    let (code, body) = get(alb, &["X-Amzn-Mtls-Clientcert: %ZZ".to_owned()]);
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("`x-amzn-mtls-clientcert`"), "{body}");
    // A route's own section replaces the listener's: there only `Client-Cert` counts.
    let der = |name: &str| {
        let pem = leaf(name);
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        format!("Client-Cert: :{b64}:")
    };
    let with_path = |path: &str, headers: &[String]| {
        let extra: Vec<&str> = headers.iter().flat_map(|h| ["-H", h.as_str()]).collect();
        crate::https_get(&curl_bin, d, alb, path, "none", &extra)
    };
    let (code, body) = with_path("/rfc9440", &[der("good")]);
    assert_eq!(code, "200", "{body}");
    assert!(
        body.contains("\"x-client-subject\": \"CN=alice\""),
        "{body}"
    );
    let (code, body) = with_path("/rfc9440", &[passthrough("good")]);
    assert_eq!(
        (code.as_str(), body.as_str()),
        ("401", "a client certificate is required\n")
    );
    // From a peer outside the trusted range, the headers are removed and there is no identity.
    let (code, body) = get(server.port("elsewhere"), &[passthrough("good")]);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"x-client-verify\": \"NONE\""), "{body}");
    assert!(!body.to_ascii_lowercase().contains("x-amzn"), "{body}");
}
