//! `[log]`: the transparency log served by `certgate serve`.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use certgate_pki::TrustBundle;
use certgate_proxy::Rule;
use certgate_tlog::note::Signer;
use serde::Deserialize;
use toml::Spanned;

use super::listener::TlsFields;
use super::{ConfiguredIdentity, Resolver};
use crate::files;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    origin: Option<Spanned<String>>,
    data_dir: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    identity: Option<Spanned<String>>,
    trust: Option<Spanned<String>>,
    #[serde(default)]
    writers: Vec<Spanned<super::ingress::RawRule>>,
    batch_max_entries: Option<Spanned<u64>>,
    batch_max_wait_ms: Option<Spanned<u64>>,
    storage: Option<Spanned<String>>,
    postgres_url: Option<Spanned<String>>,
    postgres_trust: Option<Spanned<String>>,
    #[serde(default)]
    witness: Vec<Spanned<super::witness::RawLogWitness>>,
    witness_quorum: Option<Spanned<u64>>,
}

/// Where a log keeps its entries and hashes.
#[derive(Debug, Clone)]
pub enum LogStore {
    /// `data_dir/log.redb`, one process.
    Embedded,
    /// A PostgreSQL database, shared by any number of processes.
    Postgres {
        /// The connection URL.
        url: String,
        /// With `postgres_trust`: the `[[trust]]` name and the TLS the connection must use.
        tls: Option<(String, Arc<rustls::ClientConfig>)>,
    },
}

impl PartialEq for LogStore {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Embedded, Self::Embedded) => true,
            (Self::Postgres { url: a, tls: ta }, Self::Postgres { url: b, tls: tb }) => {
                a == b && ta.as_ref().map(|t| &t.0) == tb.as_ref().map(|t| &t.0)
            }
            _ => false,
        }
    }
}

/// The resolved `[log]` section. The store itself is opened by `serve`, once.
#[derive(Debug)]
pub struct LogSection {
    /// The log's origin (checkpoint first line); its key's name.
    pub origin: String,
    /// Where `log.redb` and `log.key` live.
    pub data_dir: PathBuf,
    /// The checkpoint signer (from `data_dir/log.key`).
    pub signer: Arc<Signer>,
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// TLS of that listener; clients may present a certificate (writers must).
    pub tls: Arc<rustls::ServerConfig>,
    /// The trust writers' certificates verify against.
    pub trust: Option<Arc<TrustBundle>>,
    /// Who may append (`POST /add`): allow rules on the verified client certificate.
    pub writers: Vec<Rule>,
    /// Batching bounds.
    pub batch: certgate_log::BatchLimits,
    /// Where entries and hashes are kept.
    pub storage: LogStore,
    /// Witnesses each new checkpoint is submitted to.
    pub witnesses: Vec<super::witness::LogWitness>,
    /// How many of them must cosign before a checkpoint is served as the log's latest.
    pub witness_quorum: usize,
}

impl Resolver<'_> {
    pub(super) fn log(
        &mut self,
        raw: &Spanned<RawLog>,
        identities: &[ConfiguredIdentity],
        trusts: &[Arc<TrustBundle>],
        seen: &mut HashSet<String>,
    ) -> Option<LogSection> {
        let at = raw.span().start;
        let raw = raw.get_ref();
        let before = self.errors.len();
        let origin = match &raw.origin {
            Some(o) if !o.get_ref().is_empty() && !o.get_ref().contains(char::is_whitespace) => {
                Some(o.get_ref().clone())
            }
            Some(o) => {
                self.error(
                    Some(o.span().start),
                    "log.origin",
                    "must be non-empty, without spaces (e.g. `log.home.example/certgate`)",
                );
                None
            }
            None => {
                self.error(
                    Some(at),
                    "log.origin",
                    "missing; e.g. `origin = \"log.home.example/certgate\"`",
                );
                None
            }
        };
        let data_dir = match &raw.data_dir {
            Some(d) => Some(self.path(d.get_ref())),
            None => {
                self.error(
                    Some(at),
                    "log.data_dir",
                    "missing; e.g. `data_dir = \"data/log\"` (made by `certgate log init`)",
                );
                None
            }
        };
        let signer = match (&data_dir, &raw.data_dir) {
            (Some(dir), Some(spanned)) => {
                let key_path = dir.join("log.key");
                let store_path = dir.join("log.redb");
                if !store_path.exists() || !key_path.exists() {
                    self.error(
                        Some(spanned.span().start),
                        "log.data_dir",
                        format!(
                            "{} has no log.redb and log.key: create the log with `certgate log init --origin {} --dir {}`",
                            dir.display(),
                            origin.as_deref().unwrap_or("ORIGIN"),
                            spanned.get_ref()
                        ),
                    );
                    None
                } else {
                    self.files.push(key_path.clone());
                    match files::read(&key_path)
                        .map_err(|e| e.to_string())
                        .and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8".to_owned()))
                        .and_then(|t| Signer::parse(&t).map_err(|e| e.to_string()))
                    {
                        Ok(s) => Some(s),
                        Err(e) => {
                            self.error(
                                Some(spanned.span().start),
                                "log.data_dir",
                                format!("{}: {e}", key_path.display()),
                            );
                            None
                        }
                    }
                }
            }
            _ => None,
        };
        if let (Some(s), Some(o)) = (&signer, &origin)
            && s.name() != o
        {
            self.error(
                raw.origin.as_ref().map(|o| o.span().start),
                "log.origin",
                format!("`{o}` is not the name of the log's key (`{}`); the origin is fixed when the log is created", s.name()),
            );
        }
        let listen = self.listen(raw.listen.as_ref(), at, "log");
        if listen.is_some() && !seen.insert("log".to_owned()) {
            self.error(
                Some(at),
                "log",
                "the name `log` is taken by another listener",
            );
        }
        if raw.writers.is_empty() {
            self.error(Some(at), "log.writers", "missing: who may append, e.g. `writers = [{ cn = \"publisher\" }]` (verified client certificates only)");
        }
        if raw.trust.is_none() {
            self.error(
                Some(at),
                "log.trust",
                "missing: the [[trust]] that writers' client certificates verify against",
            );
        }
        let client_auth = Spanned::new(at..at, "request".to_owned());
        let no_sni = BTreeMap::new();
        let fields = TlsFields {
            identity: raw.identity.as_ref(),
            sni: &no_sni,
            client_auth: Some(&client_auth),
            trust: raw.trust.as_ref(),
            min_tls: None,
        };
        let alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tls = self.listener_tls("log", at, &fields, alpn, identities, trusts);
        let writers = self.rules(&raw.writers, "log.writers");
        let mut batch = certgate_log::BatchLimits::default();
        if let Some(v) = &raw.batch_max_entries {
            batch.max_entries = self.positive(v, "log.batch_max_entries").unwrap_or(1024) as usize;
        }
        if let Some(v) = &raw.batch_max_wait_ms {
            batch.max_wait = Duration::from_millis(*v.get_ref());
        }
        let storage = match (
            raw.storage
                .as_ref()
                .map(|s| (s.get_ref().as_str(), s.span().start)),
            &raw.postgres_url,
        ) {
            (None | Some(("embedded", _)), None) => LogStore::Embedded,
            (Some(("postgres", _)), Some(url)) => {
                let tls = raw.postgres_trust.as_ref().and_then(|name| {
                    let Some(trust) = trusts.iter().find(|t| t.name() == name.get_ref()) else {
                        self.unknown("trust", "log.postgres_trust", name);
                        return None;
                    };
                    self.server_trusts.insert(trust.name().to_owned());
                    match certgate_tls::upstream_client_config(trust, None) {
                        Ok(c) => Some((trust.name().to_owned(), Arc::new(c))),
                        Err(e) => {
                            self.error(
                                Some(name.span().start),
                                "log.postgres_trust",
                                e.to_string(),
                            );
                            None
                        }
                    }
                });
                LogStore::Postgres {
                    url: url.get_ref().clone(),
                    tls,
                }
            }
            (Some(("postgres", at)), None) => {
                self.error(
                    Some(at),
                    "log.postgres_url",
                    "missing: `storage = \"postgres\"` needs the database, e.g. `postgres_url = \"postgres://certgate@db.internal/certgate\"`",
                );
                LogStore::Embedded
            }
            (_, None) if raw.postgres_trust.is_some() => {
                self.error(
                    raw.postgres_trust.as_ref().map(|t| t.span().start),
                    "log.postgres_trust",
                    "set `storage = \"postgres\"` and `postgres_url` to use it",
                );
                LogStore::Embedded
            }
            (None | Some(("embedded", _)), Some(url)) => {
                self.error(
                    Some(url.span().start),
                    "log.postgres_url",
                    "set `storage = \"postgres\"` to use it",
                );
                LogStore::Embedded
            }
            (Some((other, at)), _) => {
                self.error(
                    Some(at),
                    "log.storage",
                    format!("`{other}` is not `embedded` or `postgres`"),
                );
                LogStore::Embedded
            }
        };
        let witnesses = self.log_witnesses(&raw.witness, trusts);
        let witness_quorum = match &raw.witness_quorum {
            None => witnesses.len(),
            Some(q) => {
                let n = usize::try_from(*q.get_ref()).unwrap_or(usize::MAX);
                if n == 0 || n > raw.witness.len() {
                    self.error(
                        Some(q.span().start),
                        "log.witness_quorum",
                        format!(
                            "must be between 1 and the number of [[log.witness]] ({})",
                            raw.witness.len()
                        ),
                    );
                }
                n
            }
        };
        if self.errors.len() > before {
            return None;
        }
        let tls = tls?;
        Some(LogSection {
            storage,
            witnesses,
            witness_quorum,
            origin: origin?,
            data_dir: data_dir?,
            signer: Arc::new(signer?),
            listen: listen?,
            tls: tls.server_config,
            trust: tls.trust,
            writers,
            batch,
        })
    }
}
