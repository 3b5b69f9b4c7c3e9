//! Signed-note, checkpoint and tlog-proof parsing on arbitrary bytes; whatever parses must
//! format back to something that parses the same.
#![no_main]

use certgate_tlog::checkpoint::Checkpoint;
use certgate_tlog::note::{Note, Verifiers};
use certgate_tlog::proof::TlogProof;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(note) = Note::parse(data) {
        let again = Note::parse(note.to_string().as_bytes()).expect("a formatted note parses");
        assert_eq!(again, note);
        let _ = note.verify(&Verifiers::default());
        if let Ok(cp) = Checkpoint::parse(note.text()) {
            assert_eq!(Checkpoint::parse(&cp.text()).expect("round trip"), cp);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Checkpoint::parse(text);
        let _ = certgate_tlog::note::Verifier::parse(text);
        let _ = certgate_tlog::note::Signer::parse(text);
    }
    if let Ok(p) = TlogProof::parse(data) {
        assert_eq!(TlogProof::parse(p.to_text().as_bytes()).expect("round trip"), p);
    }
});
