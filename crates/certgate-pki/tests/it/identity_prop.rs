//! Property test: identity extraction round-trips random SAN sets of generated certificates.

use std::net::IpAddr;

use certgate_pki::Identity;
use certgate_pki::ca::{self, Ca, KeyType, LeafKind, LeafRequest};
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}[a-z0-9]"
}

fn dns() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..4).prop_map(|l| l.join("."))
}

fn uri() -> impl Strategy<Value = String> {
    prop_oneof![
        (label(), label()).prop_map(|(td, p)| format!("spiffe://{td}.example/{p}")),
        (label(), label()).prop_map(|(h, p)| format!("https://{h}.example/{p}")),
    ]
}

fn email() -> impl Strategy<Value = String> {
    (label(), dns()).prop_map(|(u, d)| format!("{u}@{d}"))
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from)
    ]
}

fn test_ca() -> Ca {
    let root = ca::create_root(
        "prop CA",
        30,
        KeyType::EcdsaP256,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    Ca::new(root.cert_der, &root.key_pem).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sans_round_trip(
        dns in prop::collection::vec(dns(), 0..4),
        ip in prop::collection::vec(ip(), 0..3),
        uri in prop::collection::vec(uri(), 0..3),
        email in prop::collection::vec(email(), 0..3),
        client in any::<bool>(),
    ) {
        let ca = test_ca();
        let req = LeafRequest {
            kind: if client { LeafKind::Client } else { LeafKind::Server },
            name: "prop".to_owned(),
            dns: dns.clone(),
            ip: ip.clone(),
            uri: uri.clone(),
            email: email.clone(),
            days: 10,
            key_type: KeyType::EcdsaP256,            crl_urls: Vec::new(),
        };
        let issued = ca.issue(&req, time::OffsetDateTime::now_utc()).unwrap();
        let id = Identity::from_der(&issued.cert_der).unwrap();
        // A server's name is always its first DNS SAN (documented behaviour of `ca issue`).

        let want_dns: Vec<String> = if client || dns.iter().any(|d| d == "prop") {
            dns
        } else {
            std::iter::once("prop".to_owned()).chain(dns).collect()
        };
        prop_assert_eq!(&id.sans.dns, &want_dns);
        prop_assert_eq!(&id.sans.ip, &ip);
        prop_assert_eq!(&id.sans.uri, &uri);
        prop_assert_eq!(&id.sans.email, &email);
        let want_spiffe = uri.iter().find(|u| u.starts_with("spiffe://")).cloned();
        prop_assert_eq!(id.spiffe_id.as_ref().map(|s| s.as_str().to_owned()), want_spiffe);
        prop_assert_eq!(&id.subject, "CN=prop");
        prop_assert_eq!(&id.issuer, "CN=prop CA");
        prop_assert_eq!(&id.serial, &issued.serial);
        prop_assert_eq!(id.extended_key_usage, vec![if client { "clientAuth" } else { "serverAuth" }.to_owned()]);
    }
}
