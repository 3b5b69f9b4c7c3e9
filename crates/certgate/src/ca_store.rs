//! The small CA's directory: plain files a person can read.
//!
//! ```text
//! DIR/ca.pem        the CA certificate (0644)
//! DIR/ca.key        its private key, PKCS#8 PEM (0600)
//! DIR/index.tsv     one line per issued certificate: status, serial, expiry, revocation, subject
//! DIR/crlnumber     the number of the next CRL
//! DIR/certs/S.pem   a copy of every issued certificate, by serial
//! ```
//!
//! Commands that change the index hold `DIR/.lock` (created exclusively) while they run.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use certgate_pki::ca::{self, Ca, Issued, KeyType, LeafKind, LeafRequest, Reason, Revoked};
use certgate_pki::{Identity, Origin, credential};
use certgate_trust::statement::Digest;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ca_record::{self, Action, Record};
use crate::exit::{self, fail};
use crate::files;

const INDEX_HEADER: &str = "# certgate CA index: one line per issued certificate (tab-separated).\n\
# status (V valid, R revoked)\tserial\tnot_after\trevoked_at\treason\tkind\tsubject\n";

/// How long a command waits for another holder of the CA lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// One line of `index.tsv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Serial, lower-case hex.
    pub serial: String,
    /// Expiry.
    pub not_after: OffsetDateTime,
    /// Revocation time and reason, if revoked.
    pub revoked: Option<(OffsetDateTime, Reason)>,
    /// `server` or `client`.
    pub kind: String,
    /// RFC 4514 subject.
    pub subject: String,
}

/// The CA directory.
#[derive(Debug)]
pub struct CaDir {
    dir: PathBuf,
}

/// What [`CaDir::renew`] did.
#[derive(Debug)]
pub struct Renewed {
    /// The certificate's subject.
    pub subject: String,
    /// The new serial.
    pub serial: String,
    /// The old serial.
    pub old_serial: String,
    /// The new expiry (RFC 3339).
    pub not_after: String,
}

/// Files written by [`CaDir::issue`].
#[derive(Debug)]
pub struct IssuedFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// The private key (0600).
    pub key: PathBuf,
    /// The PKCS#12 bundle and where its password is, when asked for.
    pub p12: Option<(PathBuf, PathBuf)>,
    /// The certificate's serial.
    pub serial: String,
}

/// RFC 3339, as the index writes times.
pub fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

impl CaDir {
    /// A CA directory at `dir` (not yet checked).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the CA certificate.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.tsv")
    }

    /// True when the directory already holds a CA.
    pub fn exists(&self) -> bool {
        self.key_path().exists() || self.ca_cert_path().exists()
    }

    /// Creates a new CA. Refuses to overwrite an existing one.
    pub fn init(&self, name: &str, days: u32, key_type: KeyType) -> Result<Identity> {
        self.create(name, days, key_type, None)
    }

    /// [`Self::init`] with name constraints: the CA may sign server certificates only for
    /// `permitted` (an egress interception CA).
    pub fn init_constrained(
        &self,
        name: &str,
        days: u32,
        key_type: KeyType,
        permitted: &[certgate_pki::name_constraints::Permitted],
    ) -> Result<Identity> {
        self.create(name, days, key_type, Some(permitted))
    }

    fn create(
        &self,
        name: &str,
        days: u32,
        key_type: KeyType,
        permitted: Option<&[certgate_pki::name_constraints::Permitted]>,
    ) -> Result<Identity> {
        if self.exists() {
            return Err(fail(
                exit::CANTCREAT,
                format!(
                    "`{}` already holds a CA (ca.pem/ca.key); refusing to overwrite it",
                    self.dir.display()
                ),
            ));
        }
        fs::create_dir_all(self.dir.join("certs"))
            .with_context(|| format!("cannot create `{}`", self.dir.display()))?;
        let now = OffsetDateTime::now_utc();
        let root = match permitted {
            Some(p) => ca::create_constrained_root(name, days, key_type, now, p)?,
            None => ca::create_root(name, days, key_type, now)?,
        };
        files::write_secret(&self.key_path(), root.key_pem.as_bytes())
            .with_context(|| format!("cannot write `{}`", self.key_path().display()))?;
        files::write_public(&self.ca_cert_path(), root.cert_pem.as_bytes())
            .with_context(|| format!("cannot write `{}`", self.ca_cert_path().display()))?;
        files::write_public(&self.index_path(), INDEX_HEADER.as_bytes())?;
        files::write_public(&self.dir.join("crlnumber"), b"1\n")?;
        // A CA has a CRL from the start, so a trust (or `[ca]`) can name `DIR/crl.pem` at once.
        self.crl(&self.dir.join("crl.pem"), 30)?;
        Identity::from_der(&root.cert_der).map_err(|e| anyhow!(e.0))
    }

    /// Loads the CA certificate and key.
    pub fn open(&self) -> Result<Ca> {
        if !self.exists() {
            return Err(fail(
                exit::NOINPUT,
                format!(
                    "`{}` holds no CA; create one with: certgate ca init --dir {}",
                    self.dir.display(),
                    self.dir.display()
                ),
            ));
        }
        let cert_path = self.ca_cert_path();
        let cert_bytes = files::read(&cert_path)?;
        let certs = credential::parse_certificates(&cert_bytes, &Origin::file(&cert_path))?;
        let key_bytes = files::read(&self.key_path())?;
        let key_pem = String::from_utf8(key_bytes).map_err(|_| {
            fail(
                exit::DATAERR,
                format!("`{}` is not PEM text", self.key_path().display()),
            )
        })?;
        let cert = certs
            .into_iter()
            .next()
            .ok_or_else(|| fail(exit::DATAERR, format!("`{}` is empty", cert_path.display())))?;
        Ok(Ca::new(cert, &key_pem)?)
    }

    /// Holders keep the lock for a moment (a `serve` with `[ca]` signs a CRL or sends records
    /// while a `ca` command runs), so a taken lock is waited for, up to [`LOCK_WAIT`].
    fn lock(&self) -> Result<Lock> {
        let path = self.dir.join(".lock");
        let since = std::time::Instant::now();
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => return Ok(Lock(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if since.elapsed() >= LOCK_WAIT {
                        return Err(fail(
                            exit::TEMPFAIL,
                            format!(
                                "another certgate ca command (or a serve with [ca]) has been using `{}` for {} s (if none is running, remove `{}`)",
                                self.dir.display(),
                                LOCK_WAIT.as_secs(),
                                path.display()
                            ),
                        ));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(fail(
                        exit::CANTCREAT,
                        format!("cannot lock `{}`: {e}", path.display()),
                    ));
                }
            }
        }
    }

    /// Reads `index.tsv`.
    pub fn index(&self) -> Result<Vec<Entry>> {
        let path = self.index_path();
        let text = fs::read_to_string(&path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let bad = || {
                fail(
                    exit::DATAERR,
                    format!("`{}` line {}: malformed index line", path.display(), n + 1),
                )
            };
            let f: Vec<&str> = line.split('\t').collect();
            let [status, serial, not_after, revoked_at, reason, kind, subject] = f[..] else {
                return Err(bad());
            };
            let not_after = OffsetDateTime::parse(not_after, &Rfc3339).map_err(|_| bad())?;
            let revoked = match status {
                "V" => None,
                "R" => Some((
                    OffsetDateTime::parse(revoked_at, &Rfc3339).map_err(|_| bad())?,
                    Reason::parse(reason).ok_or_else(bad)?,
                )),
                _ => return Err(bad()),
            };
            out.push(Entry {
                serial: serial.to_owned(),
                not_after,
                revoked,
                kind: kind.to_owned(),
                subject: subject.to_owned(),
            });
        }
        Ok(out)
    }

    fn write_index(&self, entries: &[Entry]) -> Result<()> {
        let mut text = String::from(INDEX_HEADER);
        for e in entries {
            let (status, at, reason) = match &e.revoked {
                None => ("V", "-".to_owned(), "-"),
                Some((t, r)) => ("R", fmt_time(*t), r.name()),
            };
            // Tabs and newlines cannot appear in RFC 4514 output unescaped, but be safe.
            let subject = e.subject.replace(['\t', '\n'], " ");
            let _ = writeln!(
                text,
                "{status}\t{}\t{}\t{at}\t{reason}\t{}\t{subject}",
                e.serial,
                fmt_time(e.not_after),
                e.kind
            );
        }
        files::write_public(&self.index_path(), text.as_bytes())
            .with_context(|| format!("cannot write `{}`", self.index_path().display()))
    }

    /// Records an issued certificate in the index and `certs/` before it is handed out: a
    /// certificate that exists must be in the index, or it could not be revoked by serial.
    /// Called with the lock held.
    /// When the CA keeps records, the signed record goes to `records/pending` first: whatever
    /// fails after, the certificate cannot exist without its record.
    fn record(
        &self,
        ca_der: &[u8],
        issued: &Issued,
        kind: LeafKind,
        renews: Option<&str>,
    ) -> Result<Identity> {
        let identity = Identity::from_der(&issued.cert_der).map_err(|e| anyhow!(e.0))?;
        let kind = match kind {
            LeafKind::Server => "server",
            LeafKind::Client => "client",
        };
        let action = if renews.is_some() {
            Action::Renew
        } else {
            Action::Issue
        };
        let now = OffsetDateTime::now_utc().unix_timestamp();
        self.records().write_pending(&Record::of_certificate(
            action, ca_der, &identity, kind, renews, now,
        ))?;
        let mut entries = self.index()?;
        entries.push(Entry {
            serial: issued.serial.clone(),
            not_after: identity.not_after,
            revoked: None,
            kind: kind.to_owned(),
            subject: identity.subject.clone(),
        });
        fs::create_dir_all(self.dir.join("certs"))?;
        files::write_public(
            &self
                .dir
                .join("certs")
                .join(format!("{}.pem", issued.serial)),
            issued.cert_pem.as_bytes(),
        )?;
        self.write_index(&entries)?;
        Ok(identity)
    }

    /// Issues a certificate and writes `PREFIX.pem`, `PREFIX.key` and optionally `PREFIX.p12`.
    pub fn issue(
        &self,
        req: &LeafRequest,
        out_prefix: &Path,
        p12_password: Option<Option<String>>,
        replace: bool,
    ) -> Result<IssuedFiles> {
        let ca = self.open()?;
        let _lock = self.lock()?;
        // Refused before anything is issued, so a refusal leaves no certificate in the index.
        if !replace {
            let mut outputs = vec![with_ext(out_prefix, "pem"), with_ext(out_prefix, "key")];
            if p12_password.is_some() {
                outputs.push(with_ext(out_prefix, "p12"));
            }
            if let Some(existing) = outputs.iter().find(|p| p.exists()) {
                return Err(fail(
                    exit::CANTCREAT,
                    format!(
                        "`{}` exists; pick another --out, or give --force to replace it (the certificate it holds stays valid until `certgate ca revoke`)",
                        existing.display()
                    ),
                ));
            }
        }
        let issued: Issued = ca.issue(req, OffsetDateTime::now_utc())?;
        self.record(ca.certificate(), &issued, req.kind, None)?;
        if let Some(parent) = out_prefix.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        let cert = with_ext(out_prefix, "pem");
        let key = with_ext(out_prefix, "key");
        files::write_secret(&key, issued.key_pem.as_bytes())
            .with_context(|| format!("cannot write `{}`", key.display()))?;
        files::write_public(&cert, issued.cert_pem.as_bytes())
            .with_context(|| format!("cannot write `{}`", cert.display()))?;
        let p12 = match p12_password {
            None => None,
            Some(given) => {
                let p12_path = with_ext(out_prefix, "p12");
                let pass_path = with_ext(out_prefix, "p12.password");
                let password = match given {
                    Some(p) => p,
                    None => {
                        let p = random_password()?;
                        files::write_secret(&pass_path, format!("{p}\n").as_bytes())?;
                        p
                    }
                };
                let chain = [issued.cert_der.clone(), ca.certificate().clone()];
                let bytes = ca::write_pkcs12(&issued.key_der, &chain, &req.name, &password)?;
                files::write_secret(&p12_path, &bytes)
                    .with_context(|| format!("cannot write `{}`", p12_path.display()))?;
                Some((p12_path, pass_path))
            }
        };
        Ok(IssuedFiles {
            cert,
            key,
            p12,
            serial: issued.serial,
        })
    }

    /// Renews the certificate in `cert_path` (issued by this CA) for `days` (default: its old
    /// validity), with the key in `key_path` or, with `new_key`, a fresh one written there. The
    /// certificate file is replaced atomically, so a running `serve` that watches it reloads
    /// the identity without dropping connections.
    pub fn renew(
        &self,
        cert_path: &Path,
        key_path: &Path,
        days: Option<u32>,
        new_key: bool,
    ) -> Result<Renewed> {
        let ca = self.open()?;
        let bytes = files::read(cert_path)?;
        let certs = credential::parse_certificates(&bytes, &Origin::file(cert_path))?;
        let old = certs.first().ok_or_else(|| {
            fail(
                exit::DATAERR,
                format!("`{}` holds no certificate", cert_path.display()),
            )
        })?;
        let old_id = Identity::from_der(old).map_err(|e| anyhow!(e.0))?;
        // Held from the index check to the new record, so a `ca revoke` cannot slip in between.
        let _lock = self.lock()?;
        let index = self.index()?;
        let entry = index
            .iter()
            .find(|e| same_serial(&e.serial, &old_id.serial));
        if entry.is_some()
            && let Some(why) = self.renewal_refused(&old_id, &index)
        {
            return Err(fail(
                exit::DATAERR,
                format!(
                    "`{}` (serial {}): {why}",
                    cert_path.display(),
                    old_id.serial
                ),
            ));
        }
        if old_id.issuer != ca.identity().subject || entry.is_none() {
            return Err(fail(
                exit::DATAERR,
                format!(
                    "`{}` (serial {}, issued by `{}`) was not issued by the CA in `{}`",
                    cert_path.display(),
                    old_id.serial,
                    old_id.issuer,
                    self.dir.display()
                ),
            ));
        }
        let old_days = (old_id.not_after - old_id.not_before).whole_days().max(1);
        let days = days.unwrap_or(u32::try_from(old_days).unwrap_or(365));
        let req = ca::renewal_request(old, days)?;
        let key_pem = if new_key {
            None
        } else {
            let key = credential::parse_private_key(
                &files::read(key_path)?,
                &Origin::file(key_path),
                None,
            )?;
            if key.spki_sha256 != old_id.spki_sha256 {
                return Err(fail(
                    exit::DATAERR,
                    format!(
                        "the key in `{}` does not match `{}`; give the right --key, or --new-key",
                        key_path.display(),
                        cert_path.display()
                    ),
                ));
            }
            Some(String::from_utf8_lossy(&files::read(key_path)?).into_owned())
        };
        let issued = ca.issue_with_key(&req, OffsetDateTime::now_utc(), key_pem.as_deref())?;
        let identity = self.record(
            ca.certificate(),
            &issued,
            req.kind,
            Some(&old_id.serial.to_ascii_lowercase()),
        )?;
        if new_key {
            files::write_secret(key_path, issued.key_pem.as_bytes())
                .with_context(|| format!("cannot write `{}`", key_path.display()))?;
        }
        // The rest of the chain the file held (none for this one-level CA) is kept as it was.
        let mut pem = issued.cert_pem.clone();
        for c in certs.iter().skip(1) {
            pem.push_str(&certgate_pki::pem::encode("CERTIFICATE", c));
        }
        files::write_public(cert_path, pem.as_bytes())
            .with_context(|| format!("cannot write `{}`", cert_path.display()))?;
        Ok(Renewed {
            subject: identity.subject,
            serial: issued.serial,
            old_serial: old_id.serial,
            not_after: fmt_time(identity.not_after),
        })
    }

    /// Why `old` must not be renewed, if it must not: renewing would undo a revocation under a
    /// new serial when `old` itself was revoked, when a certificate with its key was revoked
    /// (whatever the reason), or when a later certificate for its subject was (a renewal of it,
    /// revoked; the old copy is not a way back).
    pub fn renewal_refused(&self, old: &Identity, index: &[Entry]) -> Option<String> {
        for e in index {
            let Some((at, reason)) = e.revoked else {
                continue;
            };
            let when = format!("{} ({})", fmt_time(at), reason.name());
            if same_serial(&e.serial, &old.serial) {
                return Some(format!(
                    "it was revoked at {when}; a revoked certificate is not renewed: issue a new one with certgate ca issue"
                ));
            }
            let Some(other) = self.copy_of(&e.serial) else {
                continue;
            };
            if other.spki_sha256 == old.spki_sha256 {
                return Some(format!(
                    "serial {} with the same key was revoked at {when}; renew with --new-key only after issuing anew (certgate ca issue)",
                    e.serial
                ));
            }
            if other.subject == old.subject && other.not_before >= old.not_before {
                return Some(format!(
                    "a later certificate for `{}` (serial {}) was revoked at {when}; an older copy does not bring it back: issue a new one with certgate ca issue",
                    old.subject, e.serial
                ));
            }
        }
        None
    }

    /// The CA's copy of the certificate with `serial` (`certs/SERIAL.pem`).
    fn copy_of(&self, serial: &str) -> Option<Identity> {
        let path = self.dir.join("certs").join(format!("{serial}.pem"));
        let bytes = fs::read(&path).ok()?;
        let certs = credential::parse_certificates(&bytes, &Origin::file(&path)).ok()?;
        Identity::from_der(certs.first()?).ok()
    }

    /// Marks a certificate revoked, by serial or by certificate file. Returns the entry.
    pub fn revoke(&self, what: &str, reason: Reason) -> Result<Entry> {
        let ca = self.open()?;
        let _lock = self.lock()?;
        let serial = if Path::new(what).is_file() {
            let bytes = files::read(Path::new(what))?;
            let certs = credential::parse_certificates(&bytes, &Origin::file(what))?;
            let first = certs
                .first()
                .ok_or_else(|| fail(exit::DATAERR, format!("`{what}` holds no certificate")))?;
            Identity::from_der(first)
                .map_err(|e| fail(exit::DATAERR, format!("`{what}`: {}", e.0)))?
                .serial
        } else {
            let cleaned: String = what
                .chars()
                .filter(|c| *c != ':')
                .collect::<String>()
                .to_ascii_lowercase();
            if cleaned.is_empty() || !cleaned.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(fail(
                    exit::USAGE,
                    format!("`{what}` is neither a certificate file nor a hex serial number"),
                ));
            }
            cleaned.trim_start_matches('0').to_owned()
        };
        let mut entries = self.index()?;
        let entry = entries
            .iter_mut()
            .find(|e| same_serial(&e.serial, &serial))
            .ok_or_else(|| {
                fail(
                    exit::DATAERR,
                    format!(
                        "serial {serial} was not issued by the CA in `{}`",
                        self.dir.display()
                    ),
                )
            })?;
        if let Some((at, _)) = entry.revoked {
            return Err(fail(
                exit::DATAERR,
                format!(
                    "serial {serial} ({}) was already revoked at {}",
                    entry.subject,
                    fmt_time(at)
                ),
            ));
        }
        let now = OffsetDateTime::now_utc();
        entry.revoked = Some((now, reason));
        let done = entry.clone();
        let cert = fs::read(self.dir.join("certs").join(format!("{}.pem", done.serial)))
            .ok()
            .and_then(|b| credential::parse_certificates(&b, &Origin::other("certs/")).ok())
            .and_then(|c| c.into_iter().next());
        self.records().write_pending(&Record {
            action: Action::Revoke,
            ca: Digest::of(ca.certificate()),
            serial: done.serial.to_ascii_lowercase(),
            cert: cert.map(|c| Digest::of(&c)),
            kind: Some(done.kind.clone()),
            subject: done.subject.clone(),
            names: Vec::new(),
            not_before: None,
            not_after: Some(done.not_after.unix_timestamp()),
            renews: None,
            reason: Some(reason.name().to_owned()),
            time: now.unix_timestamp(),
        })?;
        self.write_index(&entries)?;
        Ok(done)
    }

    /// The record files of this CA (see [`crate::ca_record`]).
    pub fn records(&self) -> ca_record::Paths {
        ca_record::Paths::new(&self.dir)
    }

    /// Sends the records waiting for the log (none when the CA keeps no record).
    pub fn send_records(&self) -> Result<ca_record::Sent> {
        // Looked at without the lock first: `serve` asks every few seconds, and taking the lock
        // each time would make a `ca` command run at that moment fail.
        if self.records().pending_files()?.is_empty() {
            return Ok(ca_record::Sent::default());
        }
        let _lock = self.lock()?;
        self.records().send_pending()
    }

    /// Signs a CRL of every revoked certificate, writes it to `out`, and bumps `crlnumber`.
    pub fn crl(&self, out: &Path, days: u32) -> Result<usize> {
        self.crl_valid_for(out, time::Duration::days(i64::from(days)))
    }

    /// [`Self::crl`], valid for `validity` (`serve` signs CRLs of any lifetime for `[ca]`).
    pub fn crl_valid_for(&self, out: &Path, validity: time::Duration) -> Result<usize> {
        let ca = self.open()?;
        let _lock = self.lock()?;
        let number_path = self.dir.join("crlnumber");
        let number: u64 = fs::read_to_string(&number_path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1);
        let revoked: Vec<Revoked> = self
            .index()?
            .into_iter()
            .filter_map(|e| {
                e.revoked.map(|(time, reason)| Revoked {
                    serial: e.serial,
                    time,
                    reason: Some(reason),
                })
            })
            .collect();
        let pem = ca.crl_valid_for(&revoked, number, OffsetDateTime::now_utc(), validity)?;
        files::write_public(out, pem.as_bytes())
            .with_context(|| format!("cannot write `{}`", out.display()))?;
        files::write_public(&number_path, format!("{}\n", number + 1).as_bytes())?;
        Ok(revoked.len())
    }
}

/// Serials compare as numbers: hex, any case, leading zeros ignored.
pub fn same_serial(a: &str, b: &str) -> bool {
    a.trim_start_matches('0')
        .eq_ignore_ascii_case(b.trim_start_matches('0'))
}

struct Lock(PathBuf);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// 24 random characters from an unambiguous alphabet.
pub fn random_password() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 24];
    ca::random_bytes(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}
