//! Tile paths and entry bundles on arbitrary input: a parsed path formats back to itself.
#![no_main]

use certgate_tlog::tile::{Tile, parse_bundle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data)
        && let Ok(t) = Tile::parse(path)
    {
        assert_eq!(t.path(), path, "only canonical paths parse");
    }
    let _ = parse_bundle(data);
});
