//! Upstream HTTP/1.1 responses on arbitrary input: never a panic; a head that parses has a valid
//! status and one framing; a chunked body decodes to the same bytes, trailers and verdict
//! however the input is split across reads, and never yields more body bytes than it was given.
#![no_main]

use bytes::BytesMut;
use certgate_proxy::upstream::wire::{Chunked, Decoded, parse_head, response_framing};
use libfuzzer_sys::fuzz_target;

/// Decodes `input` fed in pieces of `step` bytes: (body, trailer fields, what followed the end, refused).
fn dechunk(input: &[u8], step: usize) -> (Vec<u8>, usize, Vec<u8>, bool) {
    let mut decoder = Chunked::default();
    let mut buf = BytesMut::new();
    let mut pieces = input.chunks(step);
    let (mut body, mut trailers) = (Vec::new(), 0);
    loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Data(d)) => {
                assert!(!d.is_empty(), "no empty data frames");
                body.extend_from_slice(&d);
            }
            Ok(Decoded::Trailers(t)) => trailers += t.len(),
            Ok(Decoded::End) => return (body, trailers, buf.to_vec(), false),
            Ok(Decoded::NeedMore) => match pieces.next() {
                Some(p) => buf.extend_from_slice(p),
                None => return (body, trailers, Vec::new(), false),
            },
            Err(_) => return (body, trailers, Vec::new(), true),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(head)) = parse_head(&mut buf) {
        assert!((100..1000).contains(&head.status.as_u16()));
        assert!(buf.len() < data.len(), "a head takes its bytes");
        let _ = response_framing(false, &head);
        let _ = response_framing(true, &head);
    }
    let whole = dechunk(data, data.len().max(1));
    assert!(whole.0.len() <= data.len());
    for step in [1, 3, 7] {
        let split = dechunk(data, step);
        assert_eq!(whole.3, split.3, "the same verdict in pieces of {step}");
        if !whole.3 {
            assert_eq!(whole.0, split.0, "the same body in pieces of {step}");
            assert_eq!(whole.1, split.1, "the same trailers in pieces of {step}");
        }
    }
});
