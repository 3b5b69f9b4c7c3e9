//! Gemini request lines and response header lines on arbitrary input: never a panic; a parsed
//! request's normal form parses again to the same request (one spelling, one reading); a
//! checked response header never carries a line break.
#![no_main]

use certgate_proxy::gemini::request::{line_end, parse};
use certgate_proxy::gemini::status_line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(end)) = line_end(data) {
        assert!(end <= 1024);
    }
    if let Ok(req) = parse(data, 11965) {
        let url = req.url();
        let again = parse(url.as_bytes(), 11965).expect("the normal form parses");
        assert_eq!(again, req, "the normal form reads as the same request");
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Some((status, meta)) = status_line(text)
    {
        assert!((10..70).contains(&status));
        assert!(!meta.contains(['\r', '\n']) && meta.len() <= 1024);
    }
});
