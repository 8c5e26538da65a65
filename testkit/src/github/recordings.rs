//! The recorded GitHub responses of `fixtures/github/recordings.json`
//! (provenance and fields in that directory's README), embedded at compile
//! time so that the tools built from this crate run from anywhere.

use std::sync::LazyLock;

use bytes::Bytes;
use serde::Deserialize;

/// One recorded exchange, as in `recordings.json` (in step order, so a path
/// recorded twice lists its earlier representation first).
#[derive(Debug, Clone, Deserialize)]
pub struct Recording {
    /// Path and query as sent to GitHub.
    pub path: String,
    /// Status GitHub answered.
    pub status: u16,
    /// Response headers in recorded order, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// Parsed JSON, or the raw text.
    pub body: serde_json::Value,
    /// Whether `body` is JSON.
    pub body_is_json: bool,
}

impl Recording {
    /// The body as the fake sends it: compact JSON, or the text as it is.
    pub fn body_bytes(&self) -> Bytes {
        match (&self.body, self.body_is_json) {
            (serde_json::Value::String(text), false) => Bytes::from(text.clone()),
            (value, _) => Bytes::from(serde_json::to_vec(value).expect("JSON serialises")),
        }
    }
}

/// All 30 recordings, parsed once per process.
pub static RECORDINGS: LazyLock<Vec<Recording>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../fixtures/github/recordings.json"))
        .expect("recordings.json is a list of recordings")
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_thirty_recordings_parse() {
        assert_eq!(RECORDINGS.len(), 30);
        assert!(RECORDINGS.iter().all(|r| r.path.starts_with('/')));
    }
}
