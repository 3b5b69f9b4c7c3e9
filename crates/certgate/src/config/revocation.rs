//! The revocation keys of `[[trust]]` that name CRLs by URL (`crl_url`,
//! `crl_from_certificates`, `crl_refresh_secs`, `on_stale`, `stale_grace_secs`), `[ca]` (the
//! CA whose CRL `serve` keeps signed and published) and `[warnings]`.

use std::time::Duration;

use certgate_pki::verify::{self, LoadedCrl};
use toml::Spanned;

use super::{
    CaSection, CrlSource, DEFAULT_CA_CRL_VALIDITY, DEFAULT_CRL_REFRESH, MAX_STALE_GRACE_SECS,
    RawCa, RawTrust, RawWarnings, Resolver, Warnings,
};
use crate::crl_cache;

/// Identities issued by `[ca]` are renewed this long before they expire, by default.
const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86400);

/// What a trust's URL keys resolved to.
pub(super) struct Fetched {
    /// No error in these keys.
    pub ok: bool,
    /// The trust takes CRLs from URLs (named or learned).
    pub uses_urls: bool,
    /// URLs with no good copy in the cache yet.
    pub missing: Vec<String>,
    /// `crl_from_certificates`.
    pub follow: bool,
    /// `on_stale = "grace"`: seconds; else 0.
    pub grace_secs: u64,
}

impl Resolver<'_> {
    /// Resolves the URL keys of one trust: adds the cached copies to `crls` and the URLs to the
    /// sources `serve` fetches.
    pub(super) fn crl_urls(
        &mut self,
        raw: &RawTrust,
        name: &str,
        prefix: &str,
        issuers: &[rustls_pki_types::CertificateDer<'static>],
        crls: &mut Vec<LoadedCrl>,
    ) -> Fetched {
        let mut ok = true;
        let mut refresh = DEFAULT_CRL_REFRESH;
        if let Some(v) = &raw.crl_refresh_secs {
            let key = format!("{prefix}.crl_refresh_secs");
            match self.positive(v, &key) {
                Some(n) => refresh = Duration::from_secs(n),
                None => ok = false,
            }
        }
        let grace_secs = self.on_stale(raw, prefix, &mut ok);
        let follow = raw.crl_from_certificates.unwrap_or(false);
        let mut urls: Vec<(String, bool)> = Vec::new();
        for (j, u) in raw.crl_url.iter().enumerate() {
            let key = format!("{prefix}.crl_url[{j}]");
            match check_url(u.get_ref()) {
                Ok(()) => urls.push((u.get_ref().clone(), false)),
                Err(why) => {
                    self.error(Some(u.span().start), &key, why);
                    ok = false;
                }
            }
        }
        if follow {
            for u in crl_cache::read_learned(&self.state_dir, name) {
                if !urls.iter().any(|(known, _)| *known == u) {
                    urls.push((u, true));
                }
            }
        }
        let mut missing = Vec::new();
        for (url, learned) in &urls {
            let path = crl_cache::crl_path(&self.state_dir, url);
            // Not watched: the fetcher puts each new CRL in force itself (and asks for a reload
            // only when the trust had no version of that list). Watching the stored copy made
            // every refresh a full reload, which parsed the list again.
            let cached = match std::fs::read(&path) {
                // The stored copy is checked like a download: a file in the state directory
                // that no CA of the trust signed is not a CRL of this trust.
                Ok(bytes) => match verify::parse_crl(&bytes, &certgate_pki::Origin::file(&path))
                    .map_err(|e| e.to_string())
                    .and_then(|c| {
                        certgate_pki::crl::verify_signed(c.der(), issuers)
                            .map(|_| c)
                            .map_err(|e| e.to_string())
                    }) {
                    Ok(c) => {
                        crls.push(c);
                        true
                    }
                    Err(e) => {
                        self.notes.push(format!(
                                "{prefix}: the cached CRL of {url} is unusable ({e}); it is fetched again"
                            ));
                        false
                    }
                },
                Err(_) => false,
            };
            if !cached {
                missing.push(url.clone());
            }
            self.crl_sources.push(CrlSource {
                trust: name.to_owned(),
                url: url.clone(),
                refresh,
                learned: *learned,
                cached,
            });
        }
        Fetched {
            ok,
            uses_urls: !urls.is_empty() || follow,
            missing,
            follow,
            grace_secs,
        }
    }

    /// `on_stale` and `stale_grace_secs`: the grace in seconds (0 for `deny`).
    fn on_stale(&mut self, raw: &RawTrust, prefix: &str, ok: &mut bool) -> u64 {
        let grace_key = format!("{prefix}.stale_grace_secs");
        match raw
            .on_stale
            .as_ref()
            .map(|s| (s.get_ref().as_str(), s.span().start))
        {
            None | Some(("deny", _)) => {
                if let Some(g) = &raw.stale_grace_secs {
                    self.error(
                        Some(g.span().start),
                        &grace_key,
                        "only with `on_stale = \"grace\"`",
                    );
                    *ok = false;
                }
                0
            }
            Some(("grace", at)) => match &raw.stale_grace_secs {
                None => {
                    self.error(
                        Some(at),
                        &grace_key,
                        format!(
                            "missing; `on_stale = \"grace\"` needs how long a CRL past its nextUpdate is still used, e.g. `stale_grace_secs = 86400` (at most {MAX_STALE_GRACE_SECS})"
                        ),
                    );
                    *ok = false;
                    0
                }
                Some(g) if *g.get_ref() == 0 || *g.get_ref() > MAX_STALE_GRACE_SECS => {
                    self.error(
                        Some(g.span().start),
                        &grace_key,
                        format!(
                            "{} is out of range; between 1 and {MAX_STALE_GRACE_SECS} seconds (7 days)",
                            g.get_ref()
                        ),
                    );
                    *ok = false;
                    0
                }
                Some(g) => {
                    self.notes.push(format!(
                        "{prefix}: on_stale = \"grace\": a CRL that could not be refreshed is used for up to {} s past its nextUpdate (counted in certgate_crl_stale_grace_verifications_total)",
                        g.get_ref()
                    ));
                    *g.get_ref()
                }
            },
            Some((other, at)) => {
                self.error(
                    Some(at),
                    &format!("{prefix}.on_stale"),
                    format!("`{other}` is not one of `deny`, `grace`"),
                );
                *ok = false;
                0
            }
        }
    }

    /// `[ca]`: the directory must hold a CA made by `certgate ca init`.
    pub(super) fn ca_section(
        &mut self,
        raw: &Spanned<RawCa>,
        identities: &[super::ConfiguredIdentity],
    ) -> Option<CaSection> {
        let at = raw.span().start;
        let raw = raw.get_ref();
        let Some(dir) = &raw.dir else {
            self.error(
                Some(at),
                "ca.dir",
                "missing; name the CA directory (made by `certgate ca init --dir DIR`)",
            );
            return None;
        };
        let path = self.path(dir.get_ref());
        let store = crate::ca_store::CaDir::new(&path);
        if !store.exists() {
            self.error(
                Some(dir.span().start),
                "ca.dir",
                format!(
                    "`{}` holds no CA (ca.pem and ca.key); create one with `certgate ca init --dir {}`",
                    path.display(),
                    dir.get_ref()
                ),
            );
            return None;
        }
        let mut crl_validity = DEFAULT_CA_CRL_VALIDITY;
        if let Some(v) = &raw.crl_validity_secs {
            if *v.get_ref() < 10 {
                self.error(
                    Some(v.span().start),
                    "ca.crl_validity_secs",
                    "at least 10 seconds (a CRL is signed again at half its validity)",
                );
                return None;
            }
            crl_validity = Duration::from_secs(*v.get_ref());
        }
        let publish = match &raw.publish {
            Some(p) => match p.get_ref().parse::<std::net::SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.error(
                        Some(p.span().start),
                        "ca.publish",
                        format!(
                            "`{}` is not an address:port (e.g. `127.0.0.1:8480`)",
                            p.get_ref()
                        ),
                    );
                    return None;
                }
            },
            None => None,
        };
        let renew_before = match &raw.renew_before_days {
            Some(d) => Duration::from_secs(self.positive(d, "ca.renew_before_days")? * 86400),
            None => DEFAULT_RENEW_BEFORE,
        };
        let renew_days = match &raw.renew_days {
            Some(d) => {
                let days = self.positive(d, "ca.renew_days")?;
                if Duration::from_secs(days.saturating_mul(86400)) <= renew_before {
                    self.error(
                        Some(d.span().start),
                        "ca.renew_days",
                        "must be longer than `renew_before_days`, or every renewal would be due at once",
                    );
                    return None;
                }
                Some(u32::try_from(days).unwrap_or(u32::MAX))
            }
            None => None,
        };
        Some(CaSection {
            dir: path,
            crl_validity,
            publish,
            renew_before,
            renew_days,
            identities: identities
                .iter()
                .filter_map(|i| {
                    let (cert, key) = i.files.clone()?;
                    Some((i.name.clone(), cert, key))
                })
                .collect(),
        })
    }

    /// `[warnings]`.
    pub(super) fn warnings(&mut self, raw: Option<&Spanned<RawWarnings>>) -> Warnings {
        let mut w = Warnings::default();
        if let Some(raw) = raw {
            let raw = raw.get_ref();
            if let Some(d) = &raw.crl_days {
                w.crl_days = self.positive(d, "warnings.crl_days").unwrap_or(w.crl_days);
            }
            if let Some(d) = &raw.certificate_days {
                w.certificate_days = self
                    .positive(d, "warnings.certificate_days")
                    .unwrap_or(w.certificate_days);
            }
        }
        w
    }
}

/// A CRL URL must be plain `http://` with a host (RFC 5280 §4.2.1.13: CRLs are signed, and
/// fetching them over TLS would need the revocation being fetched).
fn check_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "`{url}`: CRLs are fetched over plain http:// (they are signed; https would need the revocation status being fetched)"
        ));
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if uri.host().is_none_or(str::is_empty) || rest.starts_with('/') {
        return Err(format!("`{url}` has no host"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!(
            "`{url}`: user information in a CRL URL is not supported"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn crl_urls_are_plain_http_with_a_host() {
        assert!(check_url("http://pki.example/ca.crl").is_ok());
        assert!(check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(check_url("https://pki.example/ca.crl").is_err());
        assert!(check_url("ldap://pki.example/ca.crl").is_err());
        assert!(check_url("http:///ca.crl").is_err());
        assert!(check_url("http://u:p@pki.example/ca.crl").is_err());
    }
}
