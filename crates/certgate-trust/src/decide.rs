//! How the statements in a log decide a subject's status.
//!
//! Only statements signed (validly) by a policy signer trusted for the artifact's name count. The
//! latest statement (highest log index) per signer wins. A signer that revoked its key (a valid
//! `revoked-key` statement signed by that key, anywhere in the log) counts as REVOKED. Among the
//! remaining signers' latest statements: any `untrusted` makes the subject UNTRUSTED, else any
//! `unsupported` makes it UNSUPPORTED, else it is TRUSTED. With none: REVOKED if revoked signers
//! had spoken about it, else UNKNOWN.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::policy::Policy;
use crate::statement::{Digest, Statement, Status, SubjectKind};

/// The answer, with the exit code of `certgate trust verify` (Codenotary CAS's codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    /// 0.
    Trusted,
    /// 1.
    Untrusted,
    /// 2.
    Unknown,
    /// 3.
    Unsupported,
    /// 4.
    Revoked,
}

impl Outcome {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Trusted => 0,
            Self::Untrusted => 1,
            Self::Unknown => 2,
            Self::Unsupported => 3,
            Self::Revoked => 4,
        }
    }

    /// The word printed.
    pub fn word(self) -> &'static str {
        match self {
            Self::Trusted => "TRUSTED",
            Self::Untrusted => "UNTRUSTED",
            Self::Unknown => "UNKNOWN",
            Self::Unsupported => "UNSUPPORTED",
            Self::Revoked => "REVOKED",
        }
    }
}

/// One statement about the subject, as found.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// Its log index.
    pub index: u64,
    /// `name+keyid` of its signer.
    pub signer: String,
    /// What it says.
    pub status: &'static str,
    /// When the signer says it signed.
    pub time: u64,
    /// Artifact name and version, when given.
    pub name: Option<String>,
    /// Artifact version.
    pub version: Option<String>,
    /// Whether it counted, and if not why.
    pub counted: Result<(), String>,
}

/// The decision and how it was reached.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// The status.
    pub outcome: Outcome,
    /// One sentence on why.
    pub reason: String,
    /// Every statement about the subject, oldest first.
    pub history: Vec<Finding>,
}

/// Decides `digest`'s status from log entries `(index, bytes)` under `policy`.
pub fn decide<'a>(
    entries: impl IntoIterator<Item = (u64, &'a [u8])>,
    digest: &Digest,
    policy: &Policy,
) -> Verdict {
    let mut revoked: HashSet<(String, u32)> = HashSet::new();
    let mut about: Vec<(u64, Statement, certgate_tlog::note::Note)> = Vec::new();
    for (index, bytes) in entries {
        let Ok((st, note)) = Statement::open(bytes) else {
            continue;
        };
        if st.kind == SubjectKind::Key && st.status == Status::RevokedKey {
            for s in &policy.signers {
                if Digest::of_key(&s.key) == st.digest && st.signed_by(&note, &s.key) {
                    revoked.insert((s.key.name().to_owned(), s.key.id()));
                }
            }
            continue;
        }
        if st.digest == *digest {
            about.push((index, st, note));
        }
    }
    let mut history = Vec::new();
    let mut latest: HashMap<(String, u32), (u64, Status)> = HashMap::new();
    let mut revoked_spoke = false;
    for (index, st, note) in about {
        let who = (st.signer.clone(), st.signer_id);
        let counted = match policy
            .signers
            .iter()
            .find(|s| s.key.name() == st.signer && s.key.id() == st.signer_id)
        {
            None => Err("signer not in the policy".to_owned()),
            Some(s) if !st.signed_by(&note, &s.key) => Err("invalid signature".to_owned()),
            Some(s) if !s.covers(st.name.as_deref()) => Err(format!(
                "signer not trusted for the name `{}`",
                st.name.as_deref().unwrap_or("")
            )),
            Some(_) if revoked.contains(&who) => {
                revoked_spoke = true;
                Err("the signer's key is revoked".to_owned())
            }
            Some(_) => {
                let e = latest.entry(who).or_insert((index, st.status));
                if index >= e.0 {
                    *e = (index, st.status);
                }
                Ok(())
            }
        };
        history.push(Finding {
            index,
            signer: format!("{}+{:08x}", st.signer, st.signer_id),
            status: st.status.name(),
            time: st.time,
            name: st.name.clone(),
            version: st.version.clone(),
            counted,
        });
    }
    let statuses: Vec<Status> = latest.values().map(|(_, s)| *s).collect();
    let (outcome, reason) = if statuses.is_empty() {
        if revoked_spoke {
            (
                Outcome::Revoked,
                "its only signers revoked their keys".to_owned(),
            )
        } else if history.is_empty() {
            (
                Outcome::Unknown,
                "no statement about it in the log".to_owned(),
            )
        } else {
            (
                Outcome::Unknown,
                "no statement about it by a signer the policy trusts".to_owned(),
            )
        }
    } else if statuses.contains(&Status::Untrusted) {
        (
            Outcome::Untrusted,
            "a trusted signer's latest statement says untrusted".to_owned(),
        )
    } else if statuses.contains(&Status::Unsupported) {
        (
            Outcome::Unsupported,
            "a trusted signer's latest statement says unsupported".to_owned(),
        )
    } else {
        (
            Outcome::Trusted,
            format!(
                "the latest statement of {} trusted signer(s) says trusted",
                statuses.len()
            ),
        )
    };
    Verdict {
        outcome,
        reason,
        history,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use certgate_tlog::note::Signer;

    fn statement(key: &Signer, digest: Digest, status: Status, kind: SubjectKind) -> Vec<u8> {
        let v = key.verifier();
        Statement {
            kind,
            digest,
            status,
            signer: v.name().to_owned(),
            signer_id: v.id(),
            time: 1,
            name: Some("my-addon".into()),
            version: None,
        }
        .sign(key)
        .unwrap()
        .to_string()
        .into_bytes()
    }

    #[test]
    fn latest_per_signer_wins_and_revocation_revokes() {
        let log = Signer::from_seed("log.example", [1; 32]).unwrap();
        let alice = Signer::from_seed("alice.example", [2; 32]).unwrap();
        let mallory = Signer::from_seed("mallory.example", [3; 32]).unwrap();
        let policy = Policy::parse(&format!(
            "version = 1\nlog_keys = [\"{}\"]\n[[signer]]\nkey = \"{}\"\nnames = [\"my-*\"]\n",
            log.verifier(),
            alice.verifier()
        ))
        .unwrap();
        let d = Digest::of(b"artifact");
        let t = statement(&alice, d, Status::Trusted, SubjectKind::File);
        let u = statement(&alice, d, Status::Untrusted, SubjectKind::File);
        let m = statement(&mallory, d, Status::Trusted, SubjectKind::File);
        let run = |entries: &[&[u8]]| {
            decide(
                entries.iter().enumerate().map(|(i, e)| (i as u64, *e)),
                &d,
                &policy,
            )
            .outcome
        };
        assert_eq!(run(&[]), Outcome::Unknown);
        assert_eq!(run(&[&m]), Outcome::Unknown);
        assert_eq!(run(&[&t]), Outcome::Trusted);
        assert_eq!(run(&[&t, &u]), Outcome::Untrusted);
        assert_eq!(run(&[&u, &t]), Outcome::Trusted);
        let rev = statement(
            &alice,
            Digest::of_key(&alice.verifier()),
            Status::RevokedKey,
            SubjectKind::Key,
        );
        assert_eq!(run(&[&t, &rev]), Outcome::Revoked);
        // Mallory cannot revoke Alice's key.
        let fake = statement(
            &mallory,
            Digest::of_key(&alice.verifier()),
            Status::RevokedKey,
            SubjectKind::Key,
        );
        assert_eq!(run(&[&t, &fake]), Outcome::Trusted);
    }
}
