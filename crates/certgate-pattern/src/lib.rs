//! certgate's one name matcher, used by identity rules (`cn = "alice*"`), content-trust signer
//! names (`names = ["my-*"]`), route and SNI hosts and egress host patterns.
//!
//! - [`Glob`]: `*` matches any run of characters (none included); everything else literally.
//! - [`wildcard_host`]: a host under a `*.suffix` pattern, with exactly one or any number of
//!   labels in place of the `*`.
//!
//! Both run in time linear in the pattern and the text, whatever the pattern: a glob is split
//! at its `*`s once, and each literal piece is searched for once, left to right. (Backtracking
//! matchers take exponential or quadratic time on patterns like `*a*a*a*b`.)

#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// A glob: `*` matches any run of characters (including none); everything else literally.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Glob(String);

impl Glob {
    /// A glob from its text.
    pub fn new(pattern: &str) -> Self {
        Self(pattern.to_owned())
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let mut pieces = self.0.split('*');
        // `split` yields at least one piece: the text before the first `*` (or all of it).
        let first = pieces.next().unwrap_or_default();
        let Some(mut rest) = text.strip_prefix(first) else {
            return false;
        };
        let Some(mut piece) = pieces.next() else {
            // No `*`: the pattern is literal.
            return rest.is_empty();
        };
        // Between two `*`s, the leftmost occurrence is always a best choice: it leaves the most
        // text for what follows.
        for next in pieces {
            match rest.find(piece) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
            piece = next;
        }
        // The piece after the last `*` must end the text.
        rest.ends_with(piece)
    }
}

/// How many labels a `*.` wildcard stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Labels {
    /// Exactly one (`*.example.com` matches `a.example.com`, not `a.b.example.com`), as in TLS
    /// certificates and SNI.
    One,
    /// One or more (`*.example.com` matches `a.b.example.com` too).
    OneOrMore,
}

/// Whether `host` is under the wildcard `*.suffix` (`suffix` without the leading dot), with
/// `labels` in place of the `*`. Both are compared as given (callers lower-case them).
pub fn wildcard_host(host: &str, suffix: &str, labels: Labels) -> bool {
    let Some(head) = host.strip_suffix(suffix).and_then(|h| h.strip_suffix('.')) else {
        return false;
    };
    !head.is_empty()
        && match labels {
            Labels::One => !head.contains('.'),
            Labels::OneOrMore => !head.starts_with('.') && !head.ends_with('.'),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain backtracking matcher: the specification `Glob` must agree with.
    fn reference(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
            Some((c, rest)) => t.first() == Some(c) && reference(rest, &t[1..]),
        }
    }

    #[test]
    fn globs() {
        let g = Glob::new("spiffe://home.example/admin/*");
        assert!(g.matches("spiffe://home.example/admin/alice"));
        assert!(g.matches("spiffe://home.example/admin/"));
        assert!(!g.matches("spiffe://home.example/user/alice"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("**").matches("x"));
        assert!(Glob::new("a*b*c").matches("axxbyyc"));
        assert!(!Glob::new("a*b*c").matches("axxbyy"));
        assert!(Glob::new("a*a").matches("aa"));
        assert!(!Glob::new("a*a").matches("a"));
        assert!(Glob::new("exact").matches("exact"));
        assert!(!Glob::new("exact").matches("exactly"));
        assert!(!Glob::new("").matches("x"));
        assert!(Glob::new("my-*").matches("my-addon"));
        assert!(Glob::new("*é*").matches("café au lait"));
    }

    #[test]
    fn pathological_globs_stay_linear() {
        let long = "a".repeat(100_000);
        let pattern = format!("{}b", "*a".repeat(1_000));
        assert!(!Glob::new(&pattern).matches(&long));
        assert!(Glob::new(&"*a".repeat(1_000)).matches(&long));
    }

    #[test]
    fn host_wildcards() {
        use Labels::{One, OneOrMore};
        assert!(wildcard_host("a.example.com", "example.com", One));
        assert!(!wildcard_host("a.b.example.com", "example.com", One));
        assert!(wildcard_host("a.b.example.com", "example.com", OneOrMore));
        assert!(!wildcard_host("example.com", "example.com", OneOrMore));
        assert!(!wildcard_host(".example.com", "example.com", One));
        assert!(!wildcard_host("aexample.com", "example.com", OneOrMore));
        assert!(!wildcard_host("a..example.com", "example.com", OneOrMore));
    }

    proptest::proptest! {
        #[test]
        fn glob_agrees_with_backtracking(p in "[ab*]{0,8}", t in "[ab]{0,10}") {
            proptest::prop_assert_eq!(Glob::new(&p).matches(&t), reference(p.as_bytes(), t.as_bytes()));
        }
    }
}
