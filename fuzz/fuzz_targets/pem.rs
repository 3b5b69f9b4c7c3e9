//! The PEM block reader on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(blocks) = certgate_pki::pem::parse(data) {
        for b in blocks {
            // Re-encoding and re-reading a block gives it back.
            let again = certgate_pki::pem::parse(certgate_pki::pem::encode(&b.label, &b.der).as_bytes())
                .expect("re-encoded PEM parses");
            assert_eq!(again[0].der, b.der);
        }
    }
});
