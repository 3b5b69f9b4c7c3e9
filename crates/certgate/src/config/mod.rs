//! The configuration file: TOML, `version = 1`, read in one step from raw (serde) to resolved
//! (files read, keys decrypted and matched, names linked), reporting every error at once with the
//! file, line and key.
//!
//! Every key is documented in `docs/config.md`; keep the two in step.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use certgate_pki::credential::{self, Credential};
use certgate_pki::verify::{self, UnknownRevocation};
use certgate_pki::{Origin, TrustBundle};
use certgate_proxy::Pools;
use serde::Deserialize;
use toml::Spanned;

use crate::files;

pub mod egress;
pub mod gemini;
pub mod ingress;
mod listener;
pub mod log;
mod revocation;
pub mod tunnel;
pub mod witness;

/// The only config format version so far.
pub const VERSION: i64 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: Option<Spanned<i64>>,
    #[serde(default)]
    identity: Vec<Spanned<RawIdentity>>,
    #[serde(default)]
    trust: Vec<Spanned<RawTrust>>,
    #[serde(default)]
    ingress: Vec<Spanned<ingress::RawIngress>>,
    #[serde(default)]
    tunnel: Vec<Spanned<tunnel::RawTunnel>>,
    #[serde(default)]
    gemini: Vec<Spanned<gemini::RawGemini>>,
    egress: Option<Spanned<egress::RawEgress>>,
    log: Option<Spanned<log::RawLog>>,
    witness: Option<Spanned<witness::RawWitness>>,
    admin: Option<Spanned<RawAdmin>>,
    state_dir: Option<Spanned<String>>,
    warnings: Option<Spanned<RawWarnings>>,
    ca: Option<Spanned<RawCa>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCa {
    dir: Option<Spanned<String>>,
    crl_validity_secs: Option<Spanned<u64>>,
    publish: Option<Spanned<String>>,
    renew_before_days: Option<Spanned<u64>>,
    renew_days: Option<Spanned<u64>>,
}

/// `[ca]`: certgate's own CA, kept published by `serve`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaSection {
    /// The CA directory (`certgate ca init --dir`).
    pub dir: PathBuf,
    /// How long each CRL it signs is valid; it is signed again at half of that.
    pub crl_validity: Duration,
    /// Where the CA certificate and CRL are served over plain HTTP, if anywhere.
    pub publish: Option<std::net::SocketAddr>,
    /// Identities this CA issued are renewed when they have less than this left.
    pub renew_before: Duration,
    /// Validity of a renewed identity in days (`None`: that of the old certificate).
    pub renew_days: Option<u32>,
    /// The identities loaded from certificate and key files: (name, cert, key).
    pub identities: Vec<(String, PathBuf, PathBuf)>,
}

/// The default validity of the CRLs `serve` signs for `[ca]`: 30 days, signed again at 15, so
/// a kept CRL never comes near the 7-day warning, and one left behind by a stopped serve lasts.
pub const DEFAULT_CA_CRL_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWarnings {
    crl_days: Option<Spanned<u64>>,
    certificate_days: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    name: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    cert_pem: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    key_pem: Option<Spanned<String>>,
    pkcs12: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    /// Accepted by the parser only to answer with a useful error.
    password: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    name: Option<Spanned<String>>,
    #[serde(default)]
    ca: Vec<Spanned<String>>,
    ca_pem: Option<Spanned<String>>,
    #[serde(default)]
    intermediates: Vec<Spanned<String>>,
    #[serde(default)]
    crl: Vec<Spanned<String>>,
    crl_unknown_status: Option<Spanned<String>>,
    #[serde(default)]
    crl_url: Vec<Spanned<String>>,
    crl_from_certificates: Option<bool>,
    crl_refresh_secs: Option<Spanned<u64>>,
    on_stale: Option<Spanned<String>>,
    stale_grace_secs: Option<Spanned<u64>>,
}

/// The longest grace period `on_stale = "grace"` may give a CRL past its nextUpdate.
pub const MAX_STALE_GRACE_SECS: u64 = 7 * 24 * 3600;

/// How often a CRL from a URL is fetched again at most, unless `crl_refresh_secs` says otherwise
/// (it is also fetched before its nextUpdate).
pub const DEFAULT_CRL_REFRESH: Duration = Duration::from_secs(3600);

/// A CRL that a trust takes from a URL: fetched in the background by `serve` into the state
/// directory, and loaded from there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlSource {
    /// The `[[trust]]` it belongs to.
    pub trust: String,
    /// The `http://` URL.
    pub url: String,
    /// Fetched again at least this often.
    pub refresh: Duration,
    /// Learned from a certificate's distribution point (not named in the config).
    pub learned: bool,
    /// A good copy was in the cache when the config loaded.
    pub cached: bool,
}

/// A trust that follows the CRL distribution points of the certificates it verifies.
#[derive(Clone, Debug)]
pub struct CrlFollow {
    /// The trust.
    pub trust: Arc<TrustBundle>,
}

/// When expiry warnings start (`[warnings]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Warnings {
    /// Days before a CRL's nextUpdate.
    pub crl_days: u64,
    /// Days before a certificate (identity or CA) expires.
    pub certificate_days: u64,
}

impl Default for Warnings {
    fn default() -> Self {
        Self {
            crl_days: 7,
            certificate_days: 14,
        }
    }
}

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key, e.g. `identity.gateway.key`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// The config file itself could not be read (missing, unreadable): a missing input, not a
    /// wrong configuration.
    #[serde(skip)]
    pub unreadable: bool,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": `{}`: {}", self.key, self.message)
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} error{} in the configuration:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A `[[identity]]`: a certificate and key this process presents.
#[derive(Debug)]
pub struct ConfiguredIdentity {
    /// Its name in the config.
    pub name: String,
    /// The loaded, matched credential.
    pub credential: Credential,
    /// The certificate and (unencrypted) key files, when it was loaded from such a pair: what
    /// `[ca]` renews in place.
    pub files: Option<(PathBuf, PathBuf)>,
}

/// A resolved configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[[identity]]` sections.
    pub identities: Vec<ConfiguredIdentity>,
    /// `[[trust]]` sections.
    pub trusts: Vec<Arc<TrustBundle>>,
    /// `[[ingress]]` listeners.
    pub ingresses: Vec<ingress::Ingress>,
    /// `[[tunnel]]` listeners.
    pub tunnels: Vec<tunnel::Tunnel>,
    /// `[[gemini]]` listeners.
    pub geminis: Vec<gemini::Gemini>,
    /// `[egress]`: the forward proxy, its rules, and egress tunnels.
    pub egress: Option<egress::Egress>,
    /// `[log]`: the transparency log.
    pub log: Option<log::LogSection>,
    /// `[witness]`: this process as a witness of other logs.
    pub witness: Option<witness::WitnessSection>,
    /// `[admin]`: where the admin endpoints listen.
    pub admin: Option<std::net::SocketAddr>,
    /// Non-fatal observations (reordered chains, certificates close to expiry).
    pub notes: Vec<String>,
    /// Every file the config read (itself included), for change detection.
    pub files: Vec<PathBuf>,
    /// Where certgate keeps what it fetched (`state_dir`).
    pub state_dir: PathBuf,
    /// CRLs fetched from URLs.
    pub crl_sources: Vec<CrlSource>,
    /// Trusts that follow distribution points.
    pub crl_follow: Vec<CrlFollow>,
    /// Names of the trusts that verify servers (https upstreams, egress rules): their TLS
    /// clients copy the CRLs when built, so a new CRL reaches them only through a reload.
    pub server_trusts: BTreeSet<String>,
    /// (trust, file) of every CRL file: a changed file is put in force even when the config as
    /// a whole no longer loads.
    pub crl_files: Vec<(String, PathBuf)>,
    /// Expiry warning thresholds.
    pub warnings: Warnings,
    /// `[ca]`.
    pub ca: Option<CaSection>,
}

/// Reads and resolves the config at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_reusing(path, Pools::default())
}

/// Reads and resolves the config at `path`, taking upstream clients from `pools` where their
/// upstream is unchanged (a reload keeps warm connections that way).
pub fn load_reusing(path: &Path, pools: Pools) -> Result<Config, ConfigErrors> {
    let bytes = files::read(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: None,
            key: String::new(),
            message: e.to_string(),
            unreadable: true,
        }])
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: None,
            key: String::new(),
            message: format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
            unreadable: false,
        }])
    })?;
    resolve(&text, path, time::OffsetDateTime::now_utc(), pools)
}

/// Resolves config `text` that was read from `path` (relative paths in it are relative to the
/// file's directory), taking upstream clients from `pools` where they fit.
fn resolve(
    text: &str,
    path: &Path,
    now: time::OffsetDateTime,
    pools: Pools,
) -> Result<Config, ConfigErrors> {
    let mut r = Resolver {
        pools,
        broken: HashSet::new(),
        file: path.to_owned(),
        base: path.parent().map(Path::to_owned).unwrap_or_default(),
        text,
        errors: Vec::new(),
        notes: Vec::new(),
        files: vec![path.to_owned()],
        state_dir: PathBuf::new(),
        crl_sources: Vec::new(),
        crl_follow: Vec::new(),
        server_trusts: BTreeSet::new(),
        crl_files: Vec::new(),
    };
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let line = e.span().map(|s| r.line_of(s.start));
            let message = e.message().trim().to_owned();
            return Err(ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line,
                key: String::new(),
                message,
                unreadable: false,
            }]));
        }
    };
    match &raw.version {
        None => r.error(
            None,
            "version",
            format!("missing; add `version = {VERSION}` at the top"),
        ),
        Some(v) if *v.get_ref() != VERSION => r.error(
            Some(v.span().start),
            "version",
            format!(
                "unsupported version {}; this certgate reads version {VERSION}",
                v.get_ref()
            ),
        ),
        Some(_) => {}
    }
    r.state_dir = match &raw.state_dir {
        Some(d) => r.path(d.get_ref()),
        None => r.path("state"),
    };
    let warnings = r.warnings(raw.warnings.as_ref());
    let identities = r.identities(&raw.identity, now);
    let ca = raw.ca.as_ref().and_then(|c| r.ca_section(c, &identities));
    let trusts = r.trusts(&raw.trust);
    // Sections declared but not loaded (their errors are recorded): references to them are not
    // reported again.
    for (section, names, loaded) in [
        (
            "identity",
            raw.identity
                .iter()
                .filter_map(|s| s.get_ref().name.as_ref())
                .collect::<Vec<_>>(),
            identities
                .iter()
                .map(|i| i.name.clone())
                .collect::<HashSet<_>>(),
        ),
        (
            "trust",
            raw.trust
                .iter()
                .filter_map(|s| s.get_ref().name.as_ref())
                .collect(),
            trusts.iter().map(|t| t.name().to_owned()).collect(),
        ),
    ] {
        for name in names {
            if !loaded.contains(name.get_ref()) {
                r.broken
                    .insert((section.to_owned(), name.get_ref().clone()));
            }
        }
    }
    let mut listener_names = HashSet::new();
    let ingresses = r.ingresses(&raw.ingress, &identities, &trusts, &mut listener_names);
    let tunnels = r.tunnels(&raw.tunnel, &identities, &trusts, &mut listener_names);
    let geminis = r.geminis(&raw.gemini, &identities, &trusts, &mut listener_names);
    let egress = raw
        .egress
        .as_ref()
        .and_then(|e| r.egress(e, &identities, &trusts, &mut listener_names));
    let log = raw
        .log
        .as_ref()
        .and_then(|l| r.log(l, &identities, &trusts, &mut listener_names));
    let witness = raw
        .witness
        .as_ref()
        .and_then(|w| r.witness(w, &identities, &trusts, &mut listener_names));
    let admin = raw.admin.as_ref().and_then(|a| {
        let addr = r.listen(a.get_ref().listen.as_ref(), a.span().start, "admin")?;
        if !addr.ip().is_loopback() {
            r.notes.push(format!("admin: {addr} is not a loopback address; /status and /metrics are readable by anyone who can reach it"));
        }
        Some(addr)
    });
    if r.errors.is_empty() {
        Ok(Config {
            path: path.to_owned(),
            identities,
            trusts,
            ingresses,
            tunnels,
            geminis,
            egress,
            log,
            witness,
            admin,
            notes: r.notes,
            files: r.files,
            state_dir: r.state_dir,
            crl_sources: r.crl_sources,
            crl_follow: r.crl_follow,
            server_trusts: r.server_trusts,
            crl_files: r.crl_files,
            warnings,
            ca,
        })
    } else {
        Err(ConfigErrors(r.errors))
    }
}

/// A credential error as the config reports it: a missing password says which keys give one.
fn credential_error(e: &certgate_pki::Error) -> String {
    match e {
        certgate_pki::Error::PasswordRequired { .. } => {
            format!("{e} (set `password_file` or `password_env`)")
        }
        other => other.to_string(),
    }
}

struct Resolver<'a> {
    /// Where upstream clients come from (new, or the running ones on reload).
    pools: Pools,
    /// (section, name) of `[[identity]]`/`[[trust]]` sections that failed to load.
    broken: HashSet<(String, String)>,
    file: PathBuf,
    base: PathBuf,
    text: &'a str,
    errors: Vec<ConfigError>,
    notes: Vec<String>,
    files: Vec<PathBuf>,
    /// `state_dir`, resolved.
    state_dir: PathBuf,
    crl_sources: Vec<CrlSource>,
    crl_follow: Vec<CrlFollow>,
    server_trusts: BTreeSet<String>,
    crl_files: Vec<(String, PathBuf)>,
}

impl Resolver<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn error(&mut self, offset: Option<usize>, key: &str, message: impl Into<String>) {
        let line = offset.map(|o| self.line_of(o));
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            key: key.to_owned(),
            message: message.into(),
            unreadable: false,
        });
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    /// Checks a `name` key: present, well-formed, unique within `seen`.
    fn name(
        &mut self,
        section: &str,
        index: usize,
        name: Option<&Spanned<String>>,
        at: usize,
        seen: &mut HashSet<String>,
    ) -> Option<String> {
        let Some(name) = name else {
            self.error(
                Some(at),
                &format!("{section}[{index}].name"),
                "missing; every section needs a unique name",
            );
            return None;
        };
        let value = name.get_ref();
        let valid = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            self.error(
                Some(name.span().start),
                &format!("{section}[{index}].name"),
                format!("`{value}` is not a valid name (use 1-64 letters, digits, `-` or `_`)"),
            );
            return None;
        }
        if !seen.insert(value.clone()) {
            self.error(
                Some(name.span().start),
                &format!("{section}.{value}.name"),
                format!("another [[{section}]] is already named `{value}`"),
            );
            return None;
        }
        Some(value.clone())
    }

    fn password(&mut self, raw: &RawIdentity, prefix: &str) -> Result<Option<String>, ()> {
        if let Some(p) = &raw.password {
            self.error(
                Some(p.span().start),
                &format!("{prefix}.password"),
                "inline passwords are not accepted; put it in a file (`password_file`) or an environment variable (`password_env`)",
            );
            return Err(());
        }
        match (&raw.password_file, &raw.password_env) {
            (Some(f), Some(_)) => {
                self.error(
                    Some(f.span().start),
                    &format!("{prefix}.password_file"),
                    "set either `password_file` or `password_env`, not both",
                );
                Err(())
            }
            (Some(f), None) => match files::password_from_file(&self.note_file(f.get_ref())) {
                Ok(p) => Ok(Some(p)),
                Err(e) => {
                    self.error(
                        Some(f.span().start),
                        &format!("{prefix}.password_file"),
                        e.to_string(),
                    );
                    Err(())
                }
            },
            (None, Some(v)) => match files::password_from_env(v.get_ref()) {
                Ok(p) => Ok(Some(p)),
                Err(e) => {
                    self.error(
                        Some(v.span().start),
                        &format!("{prefix}.password_env"),
                        e.to_string(),
                    );
                    Err(())
                }
            },
            (None, None) => Ok(None),
        }
    }

    /// Reads a file named by a config key, reporting errors against that key.
    /// Resolves a path and remembers it for change detection.
    fn note_file(&mut self, p: &str) -> PathBuf {
        let path = self.path(p);
        self.files.push(path.clone());
        path
    }

    fn read(&mut self, value: &Spanned<String>, key: &str) -> Option<(Vec<u8>, Origin)> {
        let path = self.note_file(value.get_ref());
        match files::read(&path) {
            Ok(bytes) => Some((bytes, Origin::file(&path))),
            Err(e) => {
                self.error(Some(value.span().start), key, e.to_string());
                None
            }
        }
    }

    fn identities(
        &mut self,
        raw: &[Spanned<RawIdentity>],
        now: time::OffsetDateTime,
    ) -> Vec<ConfiguredIdentity> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, section) in raw.iter().enumerate() {
            let at = section.span().start;
            let raw = section.get_ref();
            let Some(name) = self.name("identity", i, raw.name.as_ref(), at, &mut seen) else {
                continue;
            };
            let prefix = format!("identity.{name}");
            if let Some(c) = self.identity(raw, &prefix, at) {
                let days_left = (c.identity.not_after - now).whole_days();
                if c.identity.not_after < now {
                    self.error(
                        raw.cert
                            .as_ref()
                            .or(raw.cert_pem.as_ref())
                            .or(raw.pkcs12.as_ref())
                            .map(|s| s.span().start),
                        &prefix,
                        format!(
                            "the certificate ({}) expired on {}",
                            c.identity.subject,
                            c.identity.not_after.date()
                        ),
                    );
                    continue;
                }
                if days_left < 14 {
                    self.notes.push(format!(
                        "{prefix}: the certificate expires in {days_left} days"
                    ));
                }
                self.notes.extend(c.notes.iter().cloned());
                let files = match (&raw.cert, &raw.key, &raw.password_file, &raw.password_env) {
                    (Some(cert), Some(key), None, None) => {
                        Some((self.path(cert.get_ref()), self.path(key.get_ref())))
                    }
                    _ => None,
                };
                out.push(ConfiguredIdentity {
                    name,
                    credential: c,
                    files,
                });
            }
        }
        out
    }

    fn identity(&mut self, raw: &RawIdentity, prefix: &str, at: usize) -> Option<Credential> {
        let sources = [
            raw.cert.is_some(),
            raw.cert_pem.is_some(),
            raw.pkcs12.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            self.error(
                Some(at),
                prefix,
                "set exactly one of `cert`, `cert_pem` or `pkcs12`",
            );
            return None;
        }
        let password = self.password(raw, prefix).ok()?;
        if let Some(p12) = &raw.pkcs12 {
            if let Some(k) = raw.key.as_ref().or(raw.key_pem.as_ref()) {
                self.error(
                    Some(k.span().start),
                    &format!("{prefix}.key"),
                    "a PKCS#12 file carries its own key; remove `key`/`key_pem`",
                );
                return None;
            }
            let key = format!("{prefix}.pkcs12");
            let (bytes, origin) = self.read(p12, &key)?;
            let contents = match credential::parse_pkcs12(&bytes, &origin, password.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    self.error(Some(p12.span().start), &key, credential_error(&e));
                    return None;
                }
            };
            return match Credential::assemble(contents.certs, &origin, contents.key, &origin) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.error(Some(p12.span().start), &key, credential_error(&e));
                    None
                }
            };
        }
        // Certificate and key given separately.
        let (cert_key, cert_span) = match (&raw.cert, &raw.cert_pem) {
            (Some(c), _) => (format!("{prefix}.cert"), c),
            (None, Some(c)) => (format!("{prefix}.cert_pem"), c),
            (None, None) => return None,
        };
        let certs = match &raw.cert {
            Some(c) => {
                let (bytes, origin) = self.read(c, &cert_key)?;
                credential::parse_certificates(&bytes, &origin).map(|certs| (certs, origin))
            }
            None => {
                let origin = Origin::inline(&cert_key);
                credential::parse_certificates(cert_span.get_ref().as_bytes(), &origin)
                    .map(|c| (c, origin))
            }
        };
        let key_field = match (&raw.key, &raw.key_pem) {
            (Some(k), None) => Some((format!("{prefix}.key"), k, true)),
            (None, Some(k)) => Some((format!("{prefix}.key_pem"), k, false)),
            (Some(k), Some(_)) => {
                self.error(
                    Some(k.span().start),
                    &format!("{prefix}.key"),
                    "set either `key` or `key_pem`, not both",
                );
                None
            }
            (None, None) => {
                self.error(
                    Some(at),
                    &format!("{prefix}.key"),
                    "missing; a certificate needs its private key (`key` or `key_pem`)",
                );
                None
            }
        };
        let key = key_field.and_then(|(key_name, span, is_file)| {
            let loaded = if is_file {
                let (bytes, origin) = self.read(span, &key_name)?;
                credential::parse_private_key(&bytes, &origin, password.as_deref())
                    .map(|k| (k, origin))
            } else {
                let origin = Origin::inline(&key_name);
                credential::parse_private_key(
                    span.get_ref().as_bytes(),
                    &origin,
                    password.as_deref(),
                )
                .map(|k| (k, origin))
            };
            match loaded {
                Ok(k) => Some((k, key_name, span.span().start)),
                Err(e) => {
                    self.error(Some(span.span().start), &key_name, credential_error(&e));
                    None
                }
            }
        });
        let (certs, cert_origin) = match certs {
            Ok(c) => c,
            Err(e) => {
                self.error(
                    Some(cert_span.span().start),
                    &cert_key,
                    credential_error(&e),
                );
                return None;
            }
        };
        let ((key, key_origin), key_name, key_at) = key?;
        match Credential::assemble(certs, &cert_origin, key, &key_origin) {
            Ok(c) => Some(c),
            Err(e @ certgate_pki::Error::KeyMismatch { .. }) => {
                self.error(Some(key_at), &key_name, credential_error(&e));
                None
            }
            Err(e) => {
                self.error(
                    Some(cert_span.span().start),
                    &cert_key,
                    credential_error(&e),
                );
                None
            }
        }
    }

    fn trusts(&mut self, raw: &[Spanned<RawTrust>]) -> Vec<Arc<TrustBundle>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, section) in raw.iter().enumerate() {
            let at = section.span().start;
            let raw = section.get_ref();
            let Some(name) = self.name("trust", i, raw.name.as_ref(), at, &mut seen) else {
                continue;
            };
            let prefix = format!("trust.{name}");
            if raw.ca.is_empty() && raw.ca_pem.is_none() {
                self.error(
                    Some(at),
                    &format!("{prefix}.ca"),
                    "missing; list at least one CA certificate file (or set `ca_pem`)",
                );
                continue;
            }
            let mut ok = true;
            let mut cas = Vec::new();
            for (j, ca) in raw.ca.iter().enumerate() {
                let key = format!("{prefix}.ca[{j}]");
                let Some((bytes, origin)) = self.read(ca, &key) else {
                    ok = false;
                    continue;
                };
                match credential::parse_certificates(&bytes, &origin) {
                    Ok(certs) => cas.extend(certs),
                    Err(e) => {
                        self.error(Some(ca.span().start), &key, e.to_string());
                        ok = false;
                    }
                }
            }
            if let Some(pem) = &raw.ca_pem {
                let key = format!("{prefix}.ca_pem");
                match credential::parse_certificates(
                    pem.get_ref().as_bytes(),
                    &Origin::inline(&key),
                ) {
                    Ok(certs) => cas.extend(certs),
                    Err(e) => {
                        self.error(Some(pem.span().start), &key, e.to_string());
                        ok = false;
                    }
                }
            }
            let mut intermediates = Vec::new();
            for (j, f) in raw.intermediates.iter().enumerate() {
                let key = format!("{prefix}.intermediates[{j}]");
                let Some((bytes, origin)) = self.read(f, &key) else {
                    ok = false;
                    continue;
                };
                match credential::parse_certificates(&bytes, &origin) {
                    Ok(certs) => intermediates.extend(certs),
                    Err(e) => {
                        self.error(Some(f.span().start), &key, e.to_string());
                        ok = false;
                    }
                }
            }
            // A CRL whose issuer is one of the trust's CAs or intermediates counts only if that
            // certificate's key signed it: a file anyone could have written must not stand in
            // for (or outrank) the CA's list.
            let issuers: Vec<_> = cas.iter().chain(&intermediates).cloned().collect();
            let mut crls = Vec::new();
            for (j, crl) in raw.crl.iter().enumerate() {
                let key = format!("{prefix}.crl[{j}]");
                let path = self.path(crl.get_ref());
                self.crl_files.push((name.clone(), path));
                let Some((bytes, origin)) = self.read(crl, &key) else {
                    ok = false;
                    continue;
                };
                let checked = verify::parse_crl(&bytes, &origin)
                    .map_err(|e| e.to_string())
                    .and_then(
                        |c| match certgate_pki::crl::verify_signed(c.der(), &issuers) {
                            // The list of an intermediate the trust does not name: its signature is
                            // checked against the intermediate a client presents, at each use.
                            Ok(_) | Err(certgate_pki::crl::CrlRefused::UnknownIssuer(_)) => Ok(c),
                            Err(e) => Err(format!("the CRL in {origin} is refused: {e}")),
                        },
                    );
                match checked {
                    Ok(c) => crls.push(c),
                    Err(e) => {
                        self.error(Some(crl.span().start), &key, e);
                        ok = false;
                    }
                }
            }
            let fetched = self.crl_urls(raw, &name, &prefix, &issuers, &mut crls);
            let unknown = match raw
                .crl_unknown_status
                .as_ref()
                .map(|s| (s.get_ref().as_str(), s.span().start))
            {
                // CRLs a trust fetches are its revocation policy: a certificate none of them
                // covers is not waved through by default.
                None if fetched.uses_urls => UnknownRevocation::Deny,
                None | Some(("allow", _)) => UnknownRevocation::Allow,
                Some(("deny", _)) => UnknownRevocation::Deny,
                Some((other, at)) => {
                    self.error(
                        Some(at),
                        &format!("{prefix}.crl_unknown_status"),
                        format!("`{other}` is not one of `allow`, `deny`"),
                    );
                    ok = false;
                    UnknownRevocation::Allow
                }
            };
            if !ok || !fetched.ok {
                continue;
            }
            // Until a CRL from a URL has been fetched once, nothing says whether its issuer's
            // certificates are revoked: refuse what no CRL covers, whatever the key says.
            let unknown = if fetched.missing.is_empty() {
                unknown
            } else {
                self.notes.push(format!(
                    "{prefix}: no copy yet of the CRL at {}; until `serve` has fetched it, certificates that no CRL covers are refused (revocation_unknown)",
                    fetched.missing.join(", ")
                ));
                UnknownRevocation::Deny
            };
            match TrustBundle::new(&name, cas, crls, unknown) {
                Ok(b) => {
                    let mut b = b
                        .with_intermediates(intermediates)
                        .with_stale_grace(fetched.grace_secs);
                    if fetched.follow {
                        b = b.with_learned_crl_urls();
                    }
                    let b = Arc::new(b);
                    if fetched.follow {
                        self.crl_follow.push(CrlFollow {
                            trust: Arc::clone(&b),
                        });
                    }
                    out.push(b);
                }
                Err(e) => self.error(Some(at), &prefix, e.to_string()),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every TOML example in the docs uses only keys this loader knows.
    #[test]
    fn docs_examples_use_known_keys() {
        let doc = [
            include_str!("../../../../docs/config.md"),
            include_str!("../../../../docs/guides/http-app.md"),
            include_str!("../../../../docs/guides/transient-certs.md"),
            include_str!("../../../../docs/guides/behind-a-waf.md"),
            include_str!("../../../../docs/guides/egress.md"),
        ]
        .concat();
        let mut blocks = 0;
        for block in doc.split("```toml").skip(1) {
            // Skip the rest of the fence line (`file=NAME`, `check`, `ca-dir`).
            let (fence, block) = block.split_once('\n').unwrap_or(("", ""));
            let mut body = block.split("```").next().unwrap_or_default().to_owned();
            if fence.contains("ca-dir") {
                // A CA directory's `ca.toml`, not a serve config.
                crate::ca_record::parse_settings(&body).unwrap_or_else(|e| {
                    panic!("docs: ca.toml example does not parse:\n{body}\n{e}")
                });
                blocks += 1;
                continue;
            }
            // Guides show a route on its own; give it the listener it belongs to.
            if body.trim_start().starts_with("[[ingress.route]]") {
                body = format!("[[ingress]]\n{body}");
            }
            let body = body.as_str();
            toml::from_str::<RawConfig>(body)
                .unwrap_or_else(|e| panic!("docs/config.md example does not parse:\n{body}\n{e}"));
            blocks += 1;
        }
        assert!(blocks >= 6, "expected the examples of docs/");
    }

    #[test]
    fn lines_are_counted_from_one() {
        let r = Resolver {
            pools: Pools::default(),
            broken: HashSet::new(),
            file: PathBuf::from("x.toml"),
            base: PathBuf::new(),
            text: "a\nb\nc",
            errors: vec![],
            notes: vec![],
            files: vec![],
            state_dir: PathBuf::new(),
            crl_sources: vec![],
            crl_follow: vec![],
            server_trusts: BTreeSet::new(),
            crl_files: vec![],
        };
        assert_eq!(r.line_of(0), 1);
        assert_eq!(r.line_of(2), 2);
        assert_eq!(r.line_of(100), 3);
    }
}
