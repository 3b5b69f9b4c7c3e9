//! The on-disk cache of CRLs fetched from URLs, under the config's `state_dir`:
//!
//! - `crl/<key>.crl`: the last CRL that passed every check (DER), which the config loads, so a
//!   restart without network keeps using it until its nextUpdate;
//! - `crl/<key>.json`: what it said about itself, the validators for conditional requests
//!   (`ETag`, `Last-Modified`) and when a fetch last succeeded;
//! - `crl/learned-<trust>.txt`: distribution-point URLs a trust learned from certificates, one
//!   per line, so they are known again after a restart.
//!
//! `<key>` is the first 16 hex digits of the URL's SHA-256. Files are replaced atomically.

use std::io;
use std::path::{Path, PathBuf};

use certgate_pki::crl::CrlFacts;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// What is known about one URL.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    /// The URL.
    pub url: String,
    /// The `ETag` of the cached CRL's response.
    pub etag: Option<String>,
    /// The `Last-Modified` of the cached CRL's response.
    pub last_modified: Option<String>,
    /// What the cached CRL says about itself.
    pub facts: Option<CrlFacts>,
    /// When a fetch last succeeded (a new CRL or 304), unix seconds.
    pub last_success: Option<i64>,
}

fn key(url: &str) -> String {
    hex::encode(&Sha256::digest(url.as_bytes())[..8])
}

fn dir(state: &Path) -> PathBuf {
    state.join("crl")
}

/// Where the last good CRL of `url` is kept.
pub fn crl_path(state: &Path, url: &str) -> PathBuf {
    dir(state).join(format!("{}.crl", key(url)))
}

fn meta_path(state: &Path, url: &str) -> PathBuf {
    dir(state).join(format!("{}.json", key(url)))
}

/// The facts kept for `url` (none when never fetched or unreadable).
pub fn read_meta(state: &Path, url: &str) -> Option<Meta> {
    let bytes = std::fs::read(meta_path(state, url)).ok()?;
    serde_json::from_slice::<Meta>(&bytes)
        .ok()
        .filter(|m| m.url == url)
}

/// Stores the facts of `url`, and a new CRL (DER) when given. The CRL goes first: a crash in
/// between leaves facts that are older than the CRL, never the reverse.
pub fn write(state: &Path, url: &str, der: Option<&[u8]>, meta: &Meta) -> io::Result<()> {
    std::fs::create_dir_all(dir(state))?;
    if let Some(der) = der {
        crate::files::write_public(&crl_path(state, url), der)?;
    }
    let json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
    crate::files::write_public(&meta_path(state, url), &json)
}

fn learned_path(state: &Path, trust: &str) -> PathBuf {
    let safe: String = trust
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    dir(state).join(format!("learned-{safe}.txt"))
}

/// The distribution points `trust` learned before.
pub fn read_learned(state: &Path, trust: &str) -> Vec<String> {
    std::fs::read_to_string(learned_path(state, trust))
        .map(|s| {
            s.lines()
                .map(str::trim)
                .filter(|l| certgate_pki::crl::plain_http_url(l))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Adds `urls` to what `trust` learned; returns the ones that were new.
pub fn add_learned(state: &Path, trust: &str, urls: &[String]) -> io::Result<Vec<String>> {
    let mut known = read_learned(state, trust);
    let new: Vec<String> = urls
        .iter()
        .filter(|u| !known.contains(u))
        .cloned()
        .collect();
    if !new.is_empty() {
        known.extend(new.iter().cloned());
        std::fs::create_dir_all(dir(state))?;
        let mut text = known.join("\n");
        text.push('\n');
        crate::files::write_public(&learned_path(state, trust), text.as_bytes())?;
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_learned_urls_accumulate() {
        let dir = tempfile::tempdir().unwrap();
        let url = "http://pki.example/ca.crl";
        assert_eq!(read_meta(dir.path(), url), None);
        let meta = Meta {
            url: url.to_owned(),
            etag: Some("\"abc\"".to_owned()),
            last_success: Some(7),
            ..Meta::default()
        };
        write(dir.path(), url, Some(b"crl"), &meta).unwrap();
        assert_eq!(read_meta(dir.path(), url), Some(meta));
        assert_eq!(std::fs::read(crl_path(dir.path(), url)).unwrap(), b"crl");
        // Another URL never reads this URL's facts.
        assert_eq!(read_meta(dir.path(), "http://other.example/x.crl"), None);
        let a = "http://a.example/a.crl".to_owned();
        let b = "http://b.example/b.crl".to_owned();
        assert_eq!(
            add_learned(dir.path(), "t 1", std::slice::from_ref(&a)).unwrap(),
            vec![a.clone()]
        );
        assert_eq!(
            add_learned(dir.path(), "t 1", &[a.clone(), b.clone()]).unwrap(),
            vec![b.clone()]
        );
        assert_eq!(read_learned(dir.path(), "t 1"), vec![a, b]);
        assert!(read_learned(dir.path(), "other").is_empty());
    }
}
