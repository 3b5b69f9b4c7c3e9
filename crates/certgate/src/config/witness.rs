//! `[witness]`: `certgate serve` as a C2SP tlog-witness for the logs it lists, and
//! `[[log.witness]]`: the witnesses a `[log]` submits its checkpoints to.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use certgate_pki::TrustBundle;
use certgate_tlog::note::{Signer, Verifier, Verifiers};
use serde::Deserialize;
use toml::Spanned;

use super::listener::TlsFields;
use super::{ConfiguredIdentity, Resolver};
use crate::files;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWitness {
    listen: Option<Spanned<String>>,
    identity: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
    #[serde(default)]
    logs: Vec<Spanned<String>>,
}

/// The resolved `[witness]` section. Its state is opened by `serve`, once.
#[derive(Debug)]
pub struct WitnessSection {
    /// Where `POST /add-checkpoint` is answered.
    pub listen: SocketAddr,
    /// TLS of that listener (no client certificates: logs are known by their keys).
    pub tls: Arc<rustls::ServerConfig>,
    /// The cosigning key (`cosignature/v1`).
    pub signer: Arc<Signer>,
    /// The logs it witnesses.
    pub logs: Vec<certgate_log::witness::KnownLog>,
    /// Where the latest cosigned checkpoint of each log is kept.
    pub state_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogWitness {
    url: Spanned<String>,
    vkey: Spanned<String>,
    trust: Spanned<String>,
}

/// A witness a log submits its checkpoints to.
#[derive(Debug, Clone)]
pub struct LogWitness {
    /// Its base URL (`/add-checkpoint` is appended).
    pub url: String,
    /// Its cosignature key.
    pub vkey: Verifier,
    /// TLS to it: its server certificate must chain to the named `[[trust]]`.
    pub tls: Arc<rustls::ClientConfig>,
}

impl Resolver<'_> {
    pub(super) fn witness(
        &mut self,
        raw: &Spanned<RawWitness>,
        identities: &[ConfiguredIdentity],
        trusts: &[Arc<TrustBundle>],
        seen: &mut HashSet<String>,
    ) -> Option<WitnessSection> {
        let at = raw.span().start;
        let raw = raw.get_ref();
        let before = self.errors.len();
        let listen = self.listen(raw.listen.as_ref(), at, "witness");
        if listen.is_some() && !seen.insert("witness".to_owned()) {
            self.error(
                Some(at),
                "witness",
                "the name `witness` is taken by another listener",
            );
        }
        let signer = match &raw.key {
            None => {
                self.error(
                    Some(at),
                    "witness.key",
                    "missing: the cosigning key, made by `certgate log witness-key --name NAME --out FILE`",
                );
                None
            }
            Some(k) => {
                let path = self.path(k.get_ref());
                self.files.push(path.clone());
                match files::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8".to_owned()))
                    .and_then(|t| Signer::parse(&t).map_err(|e| e.to_string()))
                {
                    Ok(s) if s.verifier().is_witness() => Some(s),
                    Ok(_) => {
                        self.error(
                            Some(k.span().start),
                            "witness.key",
                            format!(
                                "{}: a note signing key, not a witness (cosignature) key; make one with `certgate log witness-key`",
                                path.display()
                            ),
                        );
                        None
                    }
                    Err(e) => {
                        self.error(
                            Some(k.span().start),
                            "witness.key",
                            format!("{}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
        };
        let state_dir = match &raw.state_dir {
            Some(d) => Some(self.path(d.get_ref())),
            None => {
                self.error(
                    Some(at),
                    "witness.state_dir",
                    "missing: where the latest cosigned checkpoint of each log is kept, e.g. `state_dir = \"data/witness\"`",
                );
                None
            }
        };
        if raw.logs.is_empty() {
            self.error(
                Some(at),
                "witness.logs",
                "missing: the verifier keys of the logs to witness (`certgate log init` prints one)",
            );
        }
        let mut logs: Vec<certgate_log::witness::KnownLog> = Vec::new();
        for l in &raw.logs {
            match Verifier::parse(l.get_ref()) {
                Ok(v) if v.is_witness() => self.error(
                    Some(l.span().start),
                    "witness.logs",
                    format!("`{}` is a witness key, not a log's key", l.get_ref()),
                ),
                Ok(v) => match logs.iter_mut().find(|k| k.origin == v.name()) {
                    // Several keys of one log (a rotation).
                    Some(known) => known.keys.0.push(v),
                    None => logs.push(certgate_log::witness::KnownLog {
                        origin: v.name().to_owned(),
                        keys: Verifiers(vec![v]),
                    }),
                },
                Err(e) => self.error(
                    Some(l.span().start),
                    "witness.logs",
                    format!("`{}`: {e}", l.get_ref()),
                ),
            }
        }
        let no_sni = BTreeMap::new();
        let none = Spanned::new(at..at, "none".to_owned());
        let fields = TlsFields {
            identity: raw.identity.as_ref(),
            sni: &no_sni,
            client_auth: Some(&none),
            trust: None,
            min_tls: None,
        };
        let alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tls = self.listener_tls("witness", at, &fields, alpn, identities, trusts);
        if self.errors.len() > before {
            return None;
        }
        Some(WitnessSection {
            listen: listen?,
            tls: tls?.server_config,
            signer: Arc::new(signer?),
            logs,
            state_dir: state_dir?,
        })
    }

    pub(super) fn log_witnesses(
        &mut self,
        raw: &[Spanned<RawLogWitness>],
        trusts: &[Arc<TrustBundle>],
    ) -> Vec<LogWitness> {
        let mut out = Vec::new();
        for (i, w) in raw.iter().enumerate() {
            let key = format!("log.witness[{i}]");
            let w = w.get_ref();
            if !w.url.get_ref().starts_with("https://") {
                self.error(
                    Some(w.url.span().start),
                    &format!("{key}.url"),
                    format!("`{}` must be an https:// URL", w.url.get_ref()),
                );
                continue;
            }
            let vkey = match Verifier::parse(w.vkey.get_ref()) {
                Ok(v) if v.is_witness() => v,
                Ok(_) => {
                    self.error(
                        Some(w.vkey.span().start),
                        &format!("{key}.vkey"),
                        "not a witness (cosignature) key; the witness's operator has it",
                    );
                    continue;
                }
                Err(e) => {
                    self.error(
                        Some(w.vkey.span().start),
                        &format!("{key}.vkey"),
                        e.to_string(),
                    );
                    continue;
                }
            };
            if out.iter().any(|o: &LogWitness| o.vkey == vkey) {
                self.error(
                    Some(w.vkey.span().start),
                    &format!("{key}.vkey"),
                    "this witness is listed already: one witness counts once toward witness_quorum",
                );
                continue;
            }
            let Some(trust) = trusts.iter().find(|t| t.name() == w.trust.get_ref()) else {
                self.unknown("trust", &format!("{key}.trust"), &w.trust);
                continue;
            };
            self.server_trusts.insert(trust.name().to_owned());
            match certgate_tls::upstream_client_config(trust, None) {
                Ok(tls) => out.push(LogWitness {
                    url: w.url.get_ref().trim_end_matches('/').to_owned(),
                    vkey,
                    tls: Arc::new(tls),
                }),
                Err(e) => self.error(Some(w.url.span().start), &key, e.to_string()),
            }
        }
        out
    }
}
