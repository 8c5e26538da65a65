//! An ordered, case-insensitive list of HTTP header pairs.
//!
//! The domain keeps headers as plain strings so it stays free of any HTTP
//! crate; repeated headers are kept in the order they arrived.

/// Header pairs in arrival order. Names are stored lower-cased, so lookups
/// are case-insensitive as RFC 9110 requires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList(Vec<(String, String)>);

/// Headers that describe one connection rather than the message
/// (RFC 9110 §7.6.1); a proxy must never pass them on.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// True for a header that must not be forwarded by a proxy.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

impl HeaderList {
    /// An empty list.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Appends a header, keeping any earlier header of the same name.
    pub fn append(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_ascii_lowercase(), value.into()));
    }

    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in arrival order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Iterates over `(name, value)` pairs, names lower-cased.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Replaces every value of `name` with the values produced by `f`.
    pub fn map_values(&mut self, name: &str, mut f: impl FnMut(&str) -> String) {
        for (n, v) in &mut self.0 {
            if n.eq_ignore_ascii_case(name) {
                *v = f(v);
            }
        }
    }

    /// Keeps only the headers whose names `keep` accepts.
    pub fn retain_names(&mut self, keep: impl Fn(&str) -> bool) {
        self.0.retain(|(n, _)| keep(n));
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<N: AsRef<str>, V: Into<String>> FromIterator<(N, V)> for HeaderList {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut list = Self::new();
        for (n, v) in iter {
            list.append(n.as_ref(), v);
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_keep_repeats_in_order() {
        let list: HeaderList = [
            ("Vary", "Accept"),
            ("vary", "Accept-Encoding"),
            ("ETag", "\"a\""),
        ]
        .into_iter()
        .collect();
        assert_eq!(list.get("VARY"), Some("Accept"));
        assert_eq!(
            list.get_all("vary").collect::<Vec<_>>(),
            ["Accept", "Accept-Encoding"]
        );
        assert_eq!(list.get("etag"), Some("\"a\""));
        assert_eq!(list.get("link"), None);
    }

    #[test]
    fn hop_by_hop_headers_are_recognised_in_any_case() {
        assert!(is_hop_by_hop("Transfer-Encoding"));
        assert!(is_hop_by_hop("connection"));
        assert!(is_hop_by_hop("Keep-Alive"));
        assert!(!is_hop_by_hop("ETag"));
    }
}
