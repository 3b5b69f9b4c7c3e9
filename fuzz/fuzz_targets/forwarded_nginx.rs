//! The `nginx` forwarded-certificate decoder on arbitrary header values; whatever
//! it returns must also survive identity parsing.
#![no_main]

use certgate_pki::forwarded::{InputFormat, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(chain) = decode(InputFormat::Nginx, value) {
        for cert in &chain {
            let _ = certgate_pki::Identity::from_der(cert);
        }
    }
});
