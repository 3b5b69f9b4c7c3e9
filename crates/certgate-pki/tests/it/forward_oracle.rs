//! Our forwarding encoders checked by independent decoders: the `xfcc-parser` crate for Envoy
//! XFCC, and plain base64 / percent decoding for RFC 9440, nginx and Traefik; plus round trips
//! through our own `forwarded::decode`.

use base64::Engine as _;
use certgate_pki::forward::{self, Format, ProxyInfo};
use certgate_pki::forwarded::{self, InputFormat};
use certgate_pki::verify::UnknownRevocation;
use certgate_pki::{ClientCert, PeerIdentity, TrustBundle};
use certgate_testkit::{Spec, TestPki, signed_by};
use rustls_pki_types::{CertificateDer, UnixTime};

fn client() -> (TestPki, ClientCert) {
    let pki = TestPki::new();
    let mut spec = Spec::client("alice, \"the\" admin");
    spec.sans = vec![
        rcgen::SanType::URI("spiffe://home.example/admin/alice".try_into().unwrap()),
        rcgen::SanType::DnsName("alice.home.example".try_into().unwrap()),
    ];
    let leaf = signed_by(&spec, &pki.intermediate);
    let bundle = TrustBundle::new(
        "t",
        vec![CertificateDer::from(pki.root.der.clone())],
        vec![],
        UnknownRevocation::Allow,
    )
    .unwrap();
    let chain = vec![
        CertificateDer::from(leaf.der.clone()),
        CertificateDer::from(pki.intermediate.der.clone()),
    ];
    let peer = PeerIdentity::evaluate(chain, Some(&bundle), UnixTime::now()).unwrap();
    assert!(peer.verified().is_some());
    (pki, ClientCert::Present(Box::new(peer)))
}

fn header<'a>(h: &'a [(&'static str, String)], name: &str) -> &'a str {
    h.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn xfcc_parses_with_xfcc_parser() {
    let (pki, client) = client();
    let leaf = client.presented().unwrap();
    let proxy = ProxyInfo {
        uris: vec!["spiffe://home.example/gateway".to_owned()],
    };
    let h = forward::encode(Format::Xfcc, &client, &proxy);
    let value = header(&h, "x-forwarded-client-cert");
    let elements =
        xfcc_parser::element_list(value.as_bytes()).expect("xfcc-parser accepts our XFCC");
    assert_eq!(elements.len(), 1);
    let e = &elements[0];
    assert_eq!(e.by, vec!["spiffe://home.example/gateway"]);
    assert_eq!(
        e.hash.as_deref(),
        Some(leaf.identity.cert_sha256.to_hex().as_str())
    );
    assert_eq!(e.subject.as_deref(), Some(leaf.identity.subject.as_str()));
    assert!(
        leaf.identity.subject.contains("\\\"the\\\""),
        "quotes in the CN survive: {}",
        leaf.identity.subject
    );
    assert_eq!(e.uri, vec!["spiffe://home.example/admin/alice"]);
    assert_eq!(e.dns, vec!["alice.home.example"]);
    let cert_pem = percent_encoding::percent_decode_str(e.cert.as_deref().unwrap())
        .decode_utf8()
        .unwrap();
    let parsed = certgate_pki::pem::parse(cert_pem.as_bytes()).unwrap();
    assert_eq!(parsed[0].der, leaf.identity.der.as_ref());
    let chain_pem = percent_encoding::percent_decode_str(e.chain.as_deref().unwrap())
        .decode_utf8()
        .unwrap();
    let chain = certgate_pki::pem::parse(chain_pem.as_bytes()).unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1].der, pki.intermediate.der);
    // And our own decoder reads it back.
    assert_eq!(
        forwarded::decode(InputFormat::Xfcc, value).unwrap()[0].as_ref(),
        leaf.identity.der.as_ref()
    );
}

#[test]
fn rfc9440_nginx_and_traefik_decode_independently_and_round_trip() {
    let (pki, client) = client();
    let leaf = client.presented().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let r = forward::encode(Format::Rfc9440, &client, &ProxyInfo::default());
    // RFC 9440 §2: the byte sequence of the leaf, exactly `:` base64 `:`.
    assert_eq!(
        header(&r, "client-cert"),
        format!(":{}:", b64.encode(&leaf.identity.der))
    );
    assert_eq!(
        header(&r, "client-cert-chain"),
        format!(":{}:", b64.encode(&pki.intermediate.der))
    );
    let n = forward::encode(Format::Nginx, &client, &ProxyInfo::default());
    assert_eq!(header(&n, "x-ssl-client-verify"), "SUCCESS");
    let escaped = header(&n, "x-ssl-client-escaped-cert");
    // NGX_ESCAPE_URI_COMPONENT: nothing outside ALPHA DIGIT - . _ ~ stays unescaped.
    assert!(
        escaped
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
        "{escaped}"
    );
    let t = forward::encode(Format::Traefik, &client, &ProxyInfo::default());
    let certs: Vec<Vec<u8>> = header(&t, "x-forwarded-tls-client-cert")
        .split(',')
        .map(|c| b64.decode(c).unwrap())
        .collect();
    assert_eq!(
        certs,
        vec![leaf.identity.der.to_vec(), pki.intermediate.der.clone()]
    );
    let info = header(&t, "x-forwarded-tls-client-cert-info");
    let info = percent_encoding::percent_decode_str(&info.replace('+', " "))
        .decode_utf8()
        .unwrap()
        .into_owned();
    // Traefik itself writes attribute values raw, so a name holding `"` or `;` could read as
    // more fields (`CN=bob";SAN="spiffe://.../admin`). certgate writes the characters that
    // structure the field as `%XX`: every `;`-separated piece is one of Traefik's fields.
    assert!(
        info.starts_with("Subject=\"CN=alice%2C %22the%22 admin\";"),
        "{info}"
    );
    // The quotes in the name opened no field: two certificates, one SAN list.
    assert_eq!(info.matches("Subject=").count(), 2, "{info}");
    assert_eq!(info.matches("SAN=").count(), 1, "{info}");
    assert_eq!(info.matches('"').count() % 2, 0, "{info}");
    assert!(
        info.contains("SAN=\"alice.home.example,spiffe://home.example/admin/alice\""),
        "{info}"
    );
    for (format, name, input) in [
        (Format::Rfc9440, "client-cert", InputFormat::Rfc9440),
        (
            Format::Nginx,
            "x-ssl-client-escaped-cert",
            InputFormat::Nginx,
        ),
        (
            Format::Traefik,
            "x-forwarded-tls-client-cert",
            InputFormat::Traefik,
        ),
    ] {
        let h = forward::encode(format, &client, &ProxyInfo::default());
        let back = forwarded::decode(input, header(&h, name)).unwrap();
        assert_eq!(back[0].as_ref(), leaf.identity.der.as_ref(), "{name}");
    }
}

/// A verified certificate whose names hold the separators of the list and field formats (found
/// by an attacker pass): `CN=bob";SAN="spiffe://.../admin/alice` must not add a SAN to Traefik's
/// info field, and one URI SAN holding a `,` must not read as two SANs or as a SPIFFE ID.
#[test]
fn names_with_separators_never_read_as_more_names() {
    let pki = TestPki::new();
    let mut spec = Spec::client("bob\";SAN=\"spiffe://home.example/admin/alice");
    spec.sans = vec![
        rcgen::SanType::URI(
            "spiffe://home.example/u/bob,spiffe://home.example/admin/alice"
                .try_into()
                .unwrap(),
        ),
        rcgen::SanType::DnsName("bob.example,admin.example".try_into().unwrap()),
    ];
    let leaf = signed_by(&spec, &pki.intermediate);
    let bundle = TrustBundle::new(
        "t",
        vec![CertificateDer::from(pki.root.der.clone())],
        vec![],
        UnknownRevocation::Allow,
    )
    .unwrap();
    let chain = vec![
        CertificateDer::from(leaf.der.clone()),
        CertificateDer::from(pki.intermediate.der.clone()),
    ];
    let peer = PeerIdentity::evaluate(chain, Some(&bundle), UnixTime::now()).unwrap();
    assert!(peer.verified().is_some());
    // Not a SPIFFE ID: `,` is not allowed in a path segment.
    assert_eq!(peer.identity.spiffe_id, None);
    let client = ClientCert::Present(Box::new(peer));

    let t = forward::encode(Format::Traefik, &client, &ProxyInfo::default());
    let info = header(&t, "x-forwarded-tls-client-cert-info");
    let info = percent_encoding::percent_decode_str(&info.replace('+', " "))
        .decode_utf8()
        .unwrap()
        .into_owned();
    let leaf_info = info.split("\",Subject=").next().unwrap();
    assert_eq!(leaf_info.matches("SAN=").count(), 1, "{info}");
    assert!(
        !leaf_info.contains("\"spiffe://home.example/admin"),
        "{info}"
    );
    let san = leaf_info.split("SAN=\"").nth(1).unwrap();
    assert_eq!(san.split(',').count(), 2, "two names, one list: {san}");

    let c = forward::encode(Format::Certgate, &client, &ProxyInfo::default());
    assert_eq!(
        header(&c, "x-client-san-uri"),
        "spiffe://home.example/u/bob%2Cspiffe://home.example/admin/alice"
    );
    assert_eq!(
        header(&c, "x-client-san-dns"),
        "bob.example%2Cadmin.example"
    );
    assert!(c.iter().all(|(n, _)| *n != "x-client-spiffe-id"), "{c:?}");
}
