//! Content-trust statements, policies and key files on arbitrary input: no panics, and a
//! parsed statement formats back to text that parses the same.
#![no_main]

use certgate_trust::statement::Statement;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((st, _)) = Statement::open(data) {
        assert_eq!(Statement::parse(&st.text()).expect("round trip"), st);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Statement::parse(text);
        let _ = certgate_trust::Policy::parse(text);
        let _ = certgate_trust::statement::Digest::parse(text);
    }
});
