//! certgate's CRL index (`verify::parse_crl`) against webpki's own CRL parser on arbitrary
//! bytes: whatever webpki accepts, certgate accepts too and finds every serial webpki lists
//! (a list both accept must revoke the same certificates); nothing panics. Seed the corpus with
//! real CRLs (`certgate ca crl`, `openssl ca -gencrl`) so mutations reach the entries.
#![no_main]

use certgate_pki::{Origin, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ours = verify::parse_crl(data, &Origin::other("fuzz"));
    let Ok(theirs) = webpki::BorrowedCertRevocationList::from_der(data) else {
        return;
    };
    let Ok(entries) = (&theirs).into_iter().collect::<Result<Vec<_>, _>>() else {
        return;
    };
    let ours = ours.unwrap_or_else(|e| panic!("webpki accepts a CRL certgate refuses: {e}"));
    assert_eq!(ours.revoked, entries.len());
    for e in &entries {
        assert!(ours.revokes(e.serial_number), "serial {:02x?} not found", e.serial_number);
    }
});
