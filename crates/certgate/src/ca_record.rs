//! Issuance on the record: when the CA directory's `ca.toml` names a transparency log, every
//! certificate the CA issues, renews or revokes is appended to it as a signed record, so the
//! CA's owner can audit everything it ever minted (`certgate ca audit`).
//!
//! ```text
//! DIR/ca.toml                [ca] log, log_ca, log_cert, log_key, log_vkey
//! DIR/record.key             the Ed25519 key records are signed with (0600)
//! DIR/record.vkey            its verifier key (what `ca audit` checks records with)
//! DIR/records/pending/*.note records written but not yet taken by the log, oldest first
//! DIR/records/logged.tsv     one line per record the log took: log index, action, serial
//! ```
//!
//! A record is written to `pending/` (synced to disk) before the index changes and before any
//! certificate file is handed out, and leaves it only once the log answered with an inclusion
//! proof that verifies: a log outage delays a record, it never loses one. Every `ca` command
//! and a `serve` with `[ca]` send what is pending.
//!
//! A record is a signed note:
//!
//! ```text
//! certgate-ca-record/v1
//! action <issue|renew|revoke>
//! ca sha256:<hex of the CA certificate>
//! serial <hex>
//! [cert sha256:<hex of the certificate>]
//! [kind <server|client>]
//! subject <RFC 4514 subject>
//! [name <dns:…|ip:…|uri:…|email:…>]…
//! [not-before <unix seconds>]
//! [not-after <unix seconds>]
//! [renews <old serial>]
//! [reason <RFC 5280 reason>]
//! time <unix seconds>
//!
//! — certgate-ca-record <signature>
//! ```

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use certgate_pki::{Credential, Identity, Origin, credential};
use certgate_tlog::note::{Note, Signer, Verifier, Verifiers};
use certgate_trust::statement::Digest;
use serde::Deserialize;

use crate::cli::LogRemote;
use crate::exit::{self, fail};
use crate::files;

/// The first line of every record.
pub const HEADER: &str = "certgate-ca-record/v1";
/// The name of the key records are signed with.
const KEY_NAME: &str = "certgate-ca-record";

/// What happened to a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Issue,
    Renew,
    Revoke,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Self::Issue => "issue",
            Self::Renew => "renew",
            Self::Revoke => "revoke",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Issue, Self::Renew, Self::Revoke]
            .into_iter()
            .find(|a| a.name() == s)
    }
}

/// One record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub action: Action,
    /// SHA-256 of the CA certificate (DER): which CA's record it is.
    pub ca: Digest,
    /// Serial, lower-case hex.
    pub serial: String,
    /// SHA-256 of the certificate (DER); always there for issue and renew.
    pub cert: Option<Digest>,
    pub kind: Option<String>,
    pub subject: String,
    pub names: Vec<String>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// For a renewal: the serial it renews.
    pub renews: Option<String>,
    /// For a revocation: the reason.
    pub reason: Option<String>,
    /// When the CA did it (unix seconds).
    pub time: i64,
}

/// A field value as one line without control characters (subjects come from certificates).
fn line_safe(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl Record {
    /// A record of an issued or renewed certificate.
    pub fn of_certificate(
        action: Action,
        ca_der: &[u8],
        id: &Identity,
        kind: &str,
        renews: Option<&str>,
        time: i64,
    ) -> Self {
        let mut names: Vec<String> = id.sans.dns.iter().map(|n| format!("dns:{n}")).collect();
        names.extend(id.sans.ip.iter().map(|n| format!("ip:{n}")));
        names.extend(id.sans.uri.iter().map(|n| format!("uri:{n}")));
        names.extend(id.sans.email.iter().map(|n| format!("email:{n}")));
        Self {
            action,
            ca: Digest::of(ca_der),
            serial: id.serial.to_ascii_lowercase(),
            cert: Some(Digest::of(&id.der)),
            kind: Some(kind.to_owned()),
            subject: id.subject.clone(),
            names,
            not_before: Some(id.not_before.unix_timestamp()),
            not_after: Some(id.not_after.unix_timestamp()),
            renews: renews.map(str::to_owned),
            reason: None,
            time,
        }
    }

    /// The note text.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut t = format!(
            "{HEADER}\naction {}\nca {}\nserial {}\n",
            self.action.name(),
            self.ca,
            self.serial
        );
        if let Some(c) = &self.cert {
            let _ = writeln!(t, "cert {c}");
        }
        if let Some(k) = &self.kind {
            let _ = writeln!(t, "kind {}", line_safe(k));
        }
        let _ = writeln!(t, "subject {}", line_safe(&self.subject));
        for n in &self.names {
            let _ = writeln!(t, "name {}", line_safe(n));
        }
        if let Some(v) = self.not_before {
            let _ = writeln!(t, "not-before {v}");
        }
        if let Some(v) = self.not_after {
            let _ = writeln!(t, "not-after {v}");
        }
        if let Some(v) = &self.renews {
            let _ = writeln!(t, "renews {}", line_safe(v));
        }
        if let Some(v) = &self.reason {
            let _ = writeln!(t, "reason {}", line_safe(v));
        }
        let _ = writeln!(t, "time {}", self.time);
        t
    }

    /// Parses a record's note text (signatures are checked by the caller).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(format!("not a `{HEADER}` record"));
        }
        let (mut action, mut ca, mut serial, mut cert, mut kind, mut subject) =
            (None, None, None, None, None, None);
        let (mut names, mut not_before, mut not_after, mut renews, mut reason, mut time) =
            (Vec::new(), None, None, None, None, None);
        let number = |k: &str, v: &str| {
            v.parse::<i64>()
                .map_err(|_| format!("`{k}` is not a number: `{v}`"))
        };
        for line in lines {
            let (k, v) = line
                .split_once(' ')
                .ok_or_else(|| format!("line `{line}` is not `key value`"))?;
            match k {
                "action" => {
                    once(&action, k)?;
                    action = Some(Action::parse(v).ok_or_else(|| format!("unknown action `{v}`"))?);
                }
                "ca" => {
                    once(&ca, k)?;
                    ca = Some(Digest::parse(v).map_err(|e| format!("ca: {e}"))?);
                }
                "serial" => {
                    once(&serial, k)?;
                    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(format!("serial `{v}` is not hex"));
                    }
                    serial = Some(v.to_ascii_lowercase());
                }
                "cert" => {
                    once(&cert, k)?;
                    cert = Some(Digest::parse(v).map_err(|e| format!("cert: {e}"))?);
                }
                "kind" => {
                    once(&kind, k)?;
                    kind = Some(v.to_owned());
                }
                "subject" => {
                    once(&subject, k)?;
                    subject = Some(v.to_owned());
                }
                "name" => names.push(v.to_owned()),
                "not-before" => {
                    once(&not_before, k)?;
                    not_before = Some(number(k, v)?);
                }
                "not-after" => {
                    once(&not_after, k)?;
                    not_after = Some(number(k, v)?);
                }
                "renews" => {
                    once(&renews, k)?;
                    renews = Some(v.to_ascii_lowercase());
                }
                "reason" => {
                    once(&reason, k)?;
                    reason = Some(v.to_owned());
                }
                "time" => {
                    once(&time, k)?;
                    time = Some(number(k, v)?);
                }
                _ => return Err(format!("unknown field `{k}`")),
            }
        }
        let action = action.ok_or("no `action`")?;
        if action != Action::Revoke && cert.is_none() {
            return Err(format!("an {} record names no `cert`", action.name()));
        }
        Ok(Self {
            action,
            ca: ca.ok_or("no `ca`")?,
            serial: serial.ok_or("no `serial`")?,
            cert,
            kind,
            subject: subject.ok_or("no `subject`")?,
            names,
            not_before,
            not_after,
            renews,
            reason,
            time: time.ok_or("no `time`")?,
        })
    }
}

fn once<T>(slot: &Option<T>, key: &str) -> Result<(), String> {
    match slot {
        Some(_) => Err(format!("`{key}` appears twice")),
        None => Ok(()),
    }
}

/// `DIR/ca.toml`: where the CA's records go.
#[derive(Debug)]
pub struct Settings {
    pub remote: LogRemote,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The log's verifier keys, for `ca audit`.
    pub vkeys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    ca: RawCa,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCa {
    log: String,
    #[serde(default)]
    log_ca: Vec<PathBuf>,
    log_cert: PathBuf,
    log_key: PathBuf,
    log_vkey: Vec<String>,
}

/// Parses `ca.toml` text (the keys only; paths are checked when used); the docs test uses it.
#[cfg(test)]
pub fn parse_settings(text: &str) -> Result<(), String> {
    toml::from_str::<RawFile>(text)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Paths of the record files in a CA directory.
pub struct Paths {
    dir: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    pub fn settings(&self) -> PathBuf {
        self.dir.join("ca.toml")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("record.key")
    }

    pub fn vkey(&self) -> PathBuf {
        self.dir.join("record.vkey")
    }

    pub fn pending(&self) -> PathBuf {
        self.dir.join("records").join("pending")
    }

    pub fn logged(&self) -> PathBuf {
        self.dir.join("records").join("logged.tsv")
    }

    /// The settings, or `None` when the CA keeps no record.
    pub fn load_settings(&self) -> Result<Option<Settings>> {
        let path = self.settings();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            // Only when there is nothing at all: a link to nowhere is a broken setting, not
            // a CA without a record.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && fs::symlink_metadata(&path).is_err() =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(fail(
                    exit::CONFIG,
                    format!("cannot read `{}`: {e}", path.display()),
                ));
            }
        };
        let raw: RawFile = toml::from_str(&text).map_err(|e| {
            fail(
                exit::CONFIG,
                format!("`{}`: {}", path.display(), e.to_string().trim_end()),
            )
        })?;
        let raw = raw.ca;
        if !raw.log.starts_with("https://") {
            return Err(fail(
                exit::CONFIG,
                format!(
                    "`{}`: ca.log `{}` must be an https:// URL (records are sent over mTLS)",
                    path.display(),
                    raw.log
                ),
            ));
        }
        if raw.log_ca.is_empty() {
            return Err(fail(
                exit::CONFIG,
                format!(
                    "`{}`: ca.log_ca is missing: the CA certificate(s) of the log server",
                    path.display()
                ),
            ));
        }
        if raw.log_vkey.is_empty() {
            return Err(fail(
                exit::CONFIG,
                format!(
                    "`{}`: ca.log_vkey is empty: the log's verifier key, which every answer of the log must be signed with",
                    path.display()
                ),
            ));
        }
        for k in &raw.log_vkey {
            Verifier::parse(k).map_err(|e| {
                fail(
                    exit::CONFIG,
                    format!("`{}`: ca.log_vkey `{k}`: {e}", path.display()),
                )
            })?;
        }
        let here = |p: PathBuf| if p.is_absolute() { p } else { self.dir.join(p) };
        Ok(Some(Settings {
            remote: LogRemote {
                url: raw.log,
                ca: raw.log_ca.into_iter().map(here).collect(),
            },
            cert: here(raw.log_cert),
            key: here(raw.log_key),
            vkeys: raw.log_vkey,
        }))
    }

    /// The key records are signed with, made on first use.
    fn signer(&self) -> Result<Signer> {
        let path = self.key();
        if path.exists() {
            let text = String::from_utf8(files::read(&path)?)
                .map_err(|_| fail(exit::DATAERR, format!("`{}` is not text", path.display())))?;
            return Signer::parse(text.trim())
                .map_err(|e| fail(exit::DATAERR, format!("`{}`: {e}", path.display())));
        }
        let signer = Signer::generate(KEY_NAME).map_err(|e| anyhow::anyhow!("{e}"))?;
        files::write_secret(&path, format!("{}\n", signer.to_secret_text()).as_bytes())
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        let vkey = self.vkey();
        files::write_public(&vkey, format!("{}\n", signer.verifier()).as_bytes())
            .with_context(|| format!("cannot write `{}`", vkey.display()))?;
        Ok(signer)
    }

    /// The verifier key of the records, if the CA ever signed one.
    pub fn verifier(&self) -> Result<Option<Verifier>> {
        let path = self.vkey();
        if !path.exists() {
            return Ok(None);
        }
        let text = String::from_utf8(files::read(&path)?)
            .map_err(|_| fail(exit::DATAERR, format!("`{}` is not text", path.display())))?;
        Verifier::parse(text.trim())
            .map(Some)
            .map_err(|e| fail(exit::DATAERR, format!("`{}`: {e}", path.display())))
    }

    /// Signs `record` and writes it to `pending/`, synced, when the CA keeps records. Called
    /// with the CA lock held, before the index changes.
    pub fn write_pending(&self, record: &Record) -> Result<()> {
        if self.load_settings()?.is_none() {
            // A CA that kept records does not quietly stop because its settings went missing.
            if self.key().exists() {
                return Err(fail(
                    exit::CONFIG,
                    format!(
                        "`{}` is missing, but this CA keeps its issuance on a log (`{}` exists): restore ca.toml, or move record.key away to stop keeping records",
                        self.settings().display(),
                        self.key().display()
                    ),
                ));
            }
            return Ok(());
        }
        let signer = self.signer()?;
        let note = Note::sign(&record.text(), &[&signer]).map_err(|e| anyhow::anyhow!("{e}"))?;
        let dir = self.pending();
        fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let path = dir.join(format!(
            "{nanos:020}-{}-{}.note",
            record.action.name(),
            record.serial
        ));
        files::write_public(&path, note.to_string().as_bytes())
            .with_context(|| format!("cannot write `{}`", path.display()))
    }

    /// The records not yet taken by the log, oldest first.
    pub fn pending_files(&self) -> Result<Vec<PathBuf>> {
        let dir = self.pending();
        let read = match fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(anyhow::anyhow!("cannot read `{}`: {e}", dir.display())),
        };
        let mut out: Vec<PathBuf> = read
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "note"))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Sends every pending record to the log, oldest first. Called with the CA lock held.
    /// Returns what was sent (log indexes); stops at the first failure, leaving the rest.
    pub fn send_pending(&self) -> Result<Sent> {
        let Some(settings) = self.load_settings()? else {
            return Ok(Sent::default());
        };
        let pending = self.pending_files()?;
        if pending.is_empty() {
            return Ok(Sent::default());
        }
        let identity = writer(&settings)?;
        let keys = Verifiers(
            settings
                .vkeys
                .iter()
                .filter_map(|k| Verifier::parse(k).ok())
                .collect(),
        );
        let mut sent = Sent::default();
        for path in pending {
            let bytes = files::read(&path)?;
            // Taken only when the answer is the log's own: its checkpoint signed with
            // `log_vkey`, for its origin, including the record (checked by `append`).
            let taken = crate::cmd::log::append(&settings.remote, &identity, &bytes).and_then(
                |(proof, cp)| {
                    let origin = keys.0.first().map(|k| k.name().to_owned()).unwrap_or_default();
                    if cp.origin != origin {
                        anyhow::bail!(
                            "the answer's checkpoint is for `{}`, not the log `{origin}` of ca.log_vkey",
                            cp.origin
                        );
                    }
                    proof.checkpoint.verify(&keys).map_err(|e| {
                        anyhow::anyhow!("the answer's checkpoint is not signed with ca.log_vkey: {e}")
                    })?;
                    Ok(proof)
                },
            );
            let proof = match taken {
                Ok(p) => p,
                Err(e) => {
                    sent.failed = Some(format!("{}: {e:#}", settings.remote.url));
                    sent.left = self.pending_files()?.len();
                    return Ok(sent);
                }
            };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let logged = self.logged();
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&logged)
                .with_context(|| format!("cannot open `{}`", logged.display()))?;
            writeln!(f, "{}\t{name}", proof.index)
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot write `{}`", logged.display()))?;
            fs::remove_file(&path)
                .with_context(|| format!("cannot remove `{}`", path.display()))?;
            sent.indexes.push(proof.index);
        }
        Ok(sent)
    }
}

/// What [`Paths::send_pending`] did.
#[derive(Debug, Default)]
pub struct Sent {
    /// Log indexes of the records the log took.
    pub indexes: Vec<u64>,
    /// Why the rest was not sent.
    pub failed: Option<String>,
    /// How many records are still pending.
    pub left: usize,
}

fn writer(settings: &Settings) -> Result<Credential> {
    let (co, ko) = (Origin::file(&settings.cert), Origin::file(&settings.key));
    let certs = credential::parse_certificates(&files::read(&settings.cert)?, &co)?;
    let key = credential::parse_private_key(&files::read(&settings.key)?, &ko, None)?;
    Ok(Credential::assemble(certs, &co, key, &ko)?)
}

/// Records found on a log: `(log index, record)` validly signed, and `(log index, why)` for
/// entries that claim the CA but cannot be its records.
pub type Found = (Vec<(u64, Record)>, Vec<(u64, String)>);

/// The records of the CA whose certificate hashes to `ca` found in log entries, each with its
/// log index; entries that claim this CA but are not validly signed by `key` are returned apart.
pub fn records_in(entries: &[Vec<u8>], ca: &Digest, key: Option<&Verifier>) -> Found {
    let keys = Verifiers(key.into_iter().cloned().collect());
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (i, e) in entries.iter().enumerate() {
        let i = i as u64;
        if !e.starts_with(HEADER.as_bytes()) {
            continue;
        }
        let note = match Note::parse(e) {
            Ok(n) => n,
            Err(why) => {
                bad.push((i, format!("not a signed note: {why}")));
                continue;
            }
        };
        let record = match Record::parse(note.text()) {
            Ok(r) => r,
            Err(why) => {
                bad.push((i, format!("malformed record: {why}")));
                continue;
            }
        };
        if record.ca != *ca {
            continue;
        }
        if keys.0.is_empty() || note.verify(&keys).is_err() {
            bad.push((
                i,
                format!(
                    "a record of serial {} ({}) that the CA's record key did not sign",
                    record.serial,
                    record.action.name()
                ),
            ));
            continue;
        }
        good.push((i, record));
    }
    (good, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            action: Action::Renew,
            ca: Digest::of(b"ca"),
            serial: "0a1b".into(),
            cert: Some(Digest::of(b"cert")),
            kind: Some("client".into()),
            subject: "CN=alice,O=Example".into(),
            names: vec!["dns:a.example".into(), "uri:spiffe://x/alice".into()],
            not_before: Some(1),
            not_after: Some(2),
            renews: Some("09".into()),
            reason: None,
            time: 3,
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let r = sample();
        assert_eq!(Record::parse(&r.text()), Ok(r));
    }

    #[test]
    fn malformed_records_are_refused_with_the_field() {
        let text = sample().text();
        for (bad, why) in [
            (text.replace("serial 0a1b", "serial zz"), "serial"),
            (
                text.replace("action renew", "action mint"),
                "unknown action",
            ),
            (format!("{text}serial 01\n"), "appears twice"),
            (format!("{text}extra 1\n"), "unknown field"),
            (text.replace("cert sha256", "xcert sha256"), "unknown field"),
            (text.replace(HEADER, "content-trust/v1"), "not a"),
        ] {
            let err = Record::parse(&bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let no_cert: String = text
            .lines()
            .filter(|l| !l.starts_with("cert "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            Record::parse(&no_cert)
                .unwrap_err()
                .contains("names no `cert`")
        );
    }

    #[test]
    fn subjects_cannot_break_the_note() {
        let mut r = sample();
        r.subject = "CN=a\nserial ff".into();
        let text = r.text();
        assert_eq!(text.lines().filter(|l| l.starts_with("serial ")).count(), 1);
        assert_eq!(Record::parse(&text).unwrap().serial, "0a1b");
    }

    #[test]
    fn only_records_signed_by_the_ca_key_count() {
        let key = Signer::generate(KEY_NAME).unwrap();
        let other = Signer::generate(KEY_NAME).unwrap();
        let r = sample();
        let mut theirs = r.clone();
        theirs.ca = Digest::of(b"another ca");
        let entries: Vec<Vec<u8>> = vec![
            b"unrelated entry".to_vec(),
            Note::sign(&r.text(), &[&key])
                .unwrap()
                .to_string()
                .into_bytes(),
            Note::sign(&r.text(), &[&other])
                .unwrap()
                .to_string()
                .into_bytes(),
            Note::sign(&theirs.text(), &[&other])
                .unwrap()
                .to_string()
                .into_bytes(),
        ];
        let (good, bad) = records_in(&entries, &r.ca, Some(&key.verifier()));
        assert_eq!(good, vec![(1, r.clone())]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 2);
        let (good, bad) = records_in(&entries, &r.ca, None);
        assert!(good.is_empty());
        assert_eq!(bad.len(), 2, "without a key nothing can be trusted");
    }
}
