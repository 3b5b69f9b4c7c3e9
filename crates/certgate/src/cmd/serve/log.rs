//! The transparency log inside serve: its store and sequencer, opened once per process, and
//! its API behind an ingress route.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use crate::config;
use crate::exit::{self, fail};

/// The transparency log, opened once per process (its store is locked by the process).
pub(super) struct RunningLog {
    pub(super) service: Arc<certgate_log::LogService>,
    /// The store, for the status page's size and checkpoint.
    pub(super) store: Arc<dyn certgate_log::LogStorage>,
    pub(super) origin: String,
    pub(super) data_dir: PathBuf,
    pub(super) storage: config::log::LogStore,
    pub(super) key: String,
}

impl RunningLog {
    pub(super) fn start(section: &config::log::LogSection) -> Result<Self> {
        let store: Arc<dyn certgate_log::LogStorage> = match &section.storage {
            config::log::LogStore::Embedded => Arc::new(
                certgate_log::Store::open(&section.data_dir.join("log.redb"))
                    .map_err(|e| fail(exit::CANTCREAT, format!("log: {e}")))?,
            ),
            config::log::LogStore::Postgres { url, tls } => {
                // The first instance on an empty database creates the log there, with the
                // signed checkpoint of the empty tree.
                let empty = certgate_tlog::checkpoint::Checkpoint {
                    origin: section.origin.clone(),
                    size: 0,
                    root: certgate_tlog::merkle::empty_root(),
                    extensions: vec![],
                }
                .sign(&[&section.signer])?
                .to_string();
                Arc::new(
                    certgate_log::PgStore::open_or_create(
                        url,
                        tls.as_ref().map(|t| Arc::clone(&t.1)),
                        &section.origin,
                        &empty,
                    )
                    .map_err(|e| fail(exit::TEMPFAIL, format!("log.postgres_url: {e}")))?,
                )
            }
        };
        if store.origin() != section.origin {
            return Err(fail(
                exit::CONFIG,
                format!(
                    "log: {} holds the log `{}`, not `{}`",
                    section.data_dir.display(),
                    store.origin(),
                    section.origin
                ),
            ));
        }
        let sequencer = certgate_log::Sequencer::start(
            Arc::clone(&store),
            Arc::clone(&section.signer),
            section.batch,
        );
        let mut service = certgate_log::LogService::new(Arc::clone(&store), sequencer, "/");
        if !section.witnesses.is_empty() {
            service.require_witnesses();
            // The last checkpoint that had its quorum, until a newer one has.
            if let Some(note) = super::witness::load_witnessed(section) {
                service.publish_witnessed(note);
            }
        }
        Ok(Self {
            service: Arc::new(service),
            store,
            origin: section.origin.clone(),
            data_dir: section.data_dir.clone(),
            storage: section.storage.clone(),
            key: section.signer.verifier().to_string(),
        })
    }

    /// The log's HTTP listener: reads for everyone, `POST /add` for verified writers.
    pub(super) fn ingress(
        &self,
        section: &config::log::LogSection,
    ) -> Arc<certgate_proxy::IngressConfig> {
        let svc: Arc<dyn certgate_proxy::local::LocalService> =
            Arc::new(LogApi(Arc::clone(&self.service)));
        let route = |name: &str, path: &str, writers: Option<&[certgate_proxy::Rule]>| {
            certgate_proxy::Route {
                name: name.to_owned(),
                host: None,
                path: path.to_owned(),
                upstream: certgate_proxy::Upstream::Local(Arc::clone(&svc)),
                access: certgate_proxy::Access {
                    require_client_cert: writers.is_some(),
                    require_verified: writers.is_some(),
                    allow: writers.map(<[_]>::to_vec).unwrap_or_default(),
                },
                forward: vec![],
                front: None,
                encoded_slashes: certgate_proxy::normal::EncodedSlashes::Reject,
                upgrades: vec![],
            }
        };
        Arc::new(certgate_proxy::IngressConfig {
            name: "log".to_owned(),
            tls: Arc::clone(&section.tls),
            client_auth: certgate_tls::ClientAuth::Request,
            trust: section.trust.clone(),
            routes: vec![
                route("log-add", "/add", Some(&section.writers)),
                route("log-read", "/", None),
            ],
            proxy_info: certgate_pki::forward::ProxyInfo::default(),
            x_forwarded: false,
            forward_unverified: false,
            limits: certgate_proxy::Limits::default(),
            underscores: certgate_proxy::normal::Underscores::Drop,
            front_headers: Vec::new(),
            recheck_connections: true,
            require_sni: false,
        })
    }
}

/// The log's API as an in-process service of an ingress route.
#[derive(Debug)]
pub(super) struct LogApi(Arc<certgate_log::LogService>);

impl certgate_proxy::local::LocalService for LogApi {
    fn max_body(&self) -> usize {
        certgate_log::LogService::MAX_BODY
    }

    fn call(
        &self,
        req: http::Request<bytes::Bytes>,
    ) -> std::pin::Pin<Box<dyn Future<Output = http::Response<bytes::Bytes>> + Send + '_>> {
        Box::pin(self.0.call(req))
    }
}
