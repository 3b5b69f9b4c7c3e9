//! Parsers of untrusted bytes never panic: random bytes and mutations of valid PEM and DER all
//! end in `Ok` or a described `Err`.

use certgate_pki::{Origin, credential, inspect, verify};
use certgate_testkit::TestPki;
use proptest::prelude::*;

fn all_parsers(bytes: &[u8]) {
    let o = Origin::other("fuzz");
    let _ = credential::parse_certificates(bytes, &o);
    let _ = credential::parse_private_key(bytes, &o, None);
    let _ = credential::parse_private_key(bytes, &o, Some("pw"));
    let _ = credential::parse_pkcs12(bytes, &o, Some("pw"));
    let _ = verify::parse_crl(bytes, &o);
    let _ = inspect::inspect(bytes, &o, None);
    let _ = certgate_pki::Identity::from_der(bytes);
    let _ = certgate_pki::pem::parse(bytes);
}

fn samples() -> Vec<Vec<u8>> {
    let pki = TestPki::new();
    let crl = certgate_testkit::crl(&pki.root, &[vec![1, 2, 3]], 3);
    vec![
        pki.client.der.clone(),
        pki.client.pem.clone().into_bytes(),
        pki.client.key_pem.clone().into_bytes(),
        pki.client.key.serialize_der(),
        crl,
        format!("{}{}", pki.client.pem, pki.intermediate.pem).into_bytes(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        all_parsers(&bytes);
    }

    #[test]
    fn mutated_valid_inputs(which in 0usize..6, edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let s = &samples()[which];
        let mut bytes = s.clone();
        for (i, b) in edits {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        all_parsers(&bytes);
        all_parsers(&s[..cut.index(s.len())]);
    }
}
