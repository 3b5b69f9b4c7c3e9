//! Every credential parser of certgate-pki on arbitrary bytes: certificates, keys (with and
//! without a password), PKCS#12, CRLs, identities, and `inspect`. Forwarded-header decoders have
//! one target each (`forwarded_*`).
#![no_main]

use certgate_pki::{Origin, credential, inspect, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let o = Origin::other("fuzz");
    if let Ok(certs) = credential::parse_certificates(data, &o) {
        let _ = credential::order_chain(certs, &o, None);
    }
    let _ = credential::parse_private_key(data, &o, None);
    let _ = credential::parse_private_key(data, &o, Some("pw"));
    let _ = credential::parse_pkcs12(data, &o, Some("pw"));
    let _ = verify::parse_crl(data, &o);
    let _ = certgate_pki::Identity::from_der(data);
    let _ = inspect::inspect(data, &o, None);
});
