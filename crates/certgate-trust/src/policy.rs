//! The verifier's policy file (TOML):
//!
//! ```toml
//! version = 1
//! log_keys = ["log.example/certgate+1a2b3c4d+AQ..."]   # several during a rotation
//! origin = "log.example/certgate"                       # default: the first key's name
//! log_url = "https://log.example:8444"                   # default for --log
//! witnesses = []                                         # cosignature keys (optional)
//! quorum = 0                                             # how many must cosign
//! max_staleness_secs = 86400                             # how old a synced state may be when
//!                                                        # the log cannot be reached
//! [[signer]]
//! key = "publisher.example+5e6f7a8b+AQ..."
//! names = ["my-addon", "my-*"]                           # namespaces it is trusted for
//! ```

use std::time::Duration;

use certgate_tlog::checkpoint;
use certgate_tlog::note::{Verifier, Verifiers};
use serde::Deserialize;

use crate::Error;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Option<i64>,
    #[serde(default)]
    log_keys: Vec<String>,
    origin: Option<String>,
    log_url: Option<String>,
    #[serde(default)]
    witnesses: Vec<String>,
    quorum: Option<usize>,
    max_staleness_secs: Option<u64>,
    #[serde(default)]
    signer: Vec<RawSigner>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigner {
    key: String,
    names: Option<Vec<String>>,
}

/// A signer the verifier trusts, and for which artifact names.
#[derive(Clone, Debug)]
pub struct TrustedSigner {
    /// Its verifier key.
    pub key: Verifier,
    /// Name patterns (`*` matches any run of characters).
    pub names: Vec<String>,
}

impl TrustedSigner {
    /// Whether the signer is trusted for an artifact called `name` (statements without a name
    /// match only `*`).
    pub fn covers(&self, name: Option<&str>) -> bool {
        self.names.iter().any(|p| match name {
            Some(n) => glob(p, n),
            None => p == "*",
        })
    }
}

fn glob(pattern: &str, text: &str) -> bool {
    certgate_pattern::Glob::new(pattern).matches(text)
}

/// The resolved policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Whose signatures a checkpoint needs.
    pub log: checkpoint::Policy,
    /// The log's origin.
    pub origin: String,
    /// The log's URL, if the policy names one.
    pub log_url: Option<String>,
    /// Trusted signers.
    pub signers: Vec<TrustedSigner>,
    /// How old the last synced state may be when the log is unreachable (`None`: never use it).
    pub max_staleness: Option<Duration>,
}

impl Policy {
    /// Parses a policy file's text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| Error::Policy(e.to_string()))?;
        if raw.version != Some(1) {
            return Err(Error::Policy("`version = 1` is required".into()));
        }
        let key = |field: &str, k: &str| {
            Verifier::parse(k).map_err(|e| Error::Policy(format!("{field}: `{k}`: {e}")))
        };
        let logs = raw
            .log_keys
            .iter()
            .map(|k| key("log_keys", k))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(first) = logs.first() else {
            return Err(Error::Policy(
                "`log_keys` must list at least one log key".into(),
            ));
        };
        let origin = raw
            .origin
            .clone()
            .unwrap_or_else(|| first.name().to_owned());
        let witnesses = raw
            .witnesses
            .iter()
            .map(|k| key("witnesses", k))
            .collect::<Result<Vec<_>, _>>()?;
        let quorum = raw.quorum.unwrap_or(0);
        if quorum > witnesses.len() {
            return Err(Error::Policy(format!(
                "quorum {quorum} is more than the {} witnesses listed",
                witnesses.len()
            )));
        }
        let signers = raw
            .signer
            .iter()
            .map(|s| {
                Ok(TrustedSigner {
                    key: key("signer.key", &s.key)?,
                    names: s.names.clone().unwrap_or_else(|| vec!["*".to_owned()]),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        if signers.is_empty() {
            return Err(Error::Policy(
                "no [[signer]]: nothing could ever be trusted".into(),
            ));
        }
        Ok(Self {
            log: checkpoint::Policy {
                logs: Verifiers(logs),
                witnesses: Verifiers(witnesses),
                quorum,
            },
            origin,
            log_url: raw.log_url,
            signers,
            max_staleness: raw.max_staleness_secs.map(Duration::from_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("my-*", "my-addon"));
        assert!(!glob("my-*", "your-addon"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("exact", "exactly"));
    }
}
