//! What each fuzz target checks, one function per target, on arbitrary
//! bytes: no panic, and the invariants that must hold for any input. Also
//! compiled into the workspace's tests/fuzz_corpus.rs, which runs every
//! function over fuzz/corpus/<target> on stable.

use std::time::{Duration, UNIX_EPOCH};

use chimney::domain::{
    CacheKey, DeployEvent, DeployEventDraft, GithubPath, IfNoneMatch, LinkTarget, MAX_PATH_BYTES,
    NormalisedQuery, PathPolicy, RepoName, TtlPolicy, rewrite_link_header,
};

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// Paths: an accepted path is canonical (a fixed point), bounded,
/// printable ASCII, and has no dot segment or control character in its
/// first three decodings; a long input is always refused.
pub fn path(data: &[u8]) {
    let raw = text(data);
    if let Ok(path) = GithubPath::parse(&raw) {
        let s = path.as_str();
        assert!(s.starts_with('/') && s.len() <= MAX_PATH_BYTES, "{s}");
        assert!(s.bytes().all(|b| b.is_ascii_graphic()), "{s}");
        assert_eq!(
            GithubPath::parse(s).as_ref(),
            Ok(&path),
            "not a fixed point"
        );
        let mut layer = s.to_owned();
        // The layer as sent and every decoding of it (CONTRACT 3.2): each
        // round that changes the text shortens it, so this ends.
        loop {
            assert!(!layer.chars().any(char::is_control), "{s}");
            assert!(!layer.split('/').any(|x| x == "." || x == ".."), "{s}");
            let next = percent_decode(&layer);
            if next == layer {
                break;
            }
            layer = next;
        }
        let _ = PathPolicy::default().allows(&path);
        let _ = path.split_repo_prefix();
    }
    if raw.len() > MAX_PATH_BYTES {
        assert!(GithubPath::parse(&raw).is_err());
    }
}

/// Lossy percent-decoding without a dependency beyond chimney's.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                // Two hex digits exactly: from_str_radix alone takes `+2`.
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Queries: normalising is idempotent and keys come out sorted and unique.
pub fn query(data: &[u8]) {
    let raw = text(data);
    let once = NormalisedQuery::parse(&raw);
    assert_eq!(NormalisedQuery::parse(once.as_str()), once);
    let keys: Vec<&str> = once
        .as_str()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split('=').next().unwrap_or(""))
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{}", once.as_str());
}

/// ETags: any header parses without panicking, and a parsed list matches
/// itself split over two lines the same way.
pub fn etag(data: &[u8]) {
    let raw = text(data);
    let (a, b) = raw.split_once('\n').unwrap_or((&raw, ""));
    if let Some(inm) = IfNoneMatch::parse([a, b]) {
        let _ = inm.matches(a);
        let _ = inm.matches("\"x\"");
    }
}

/// Link: never panics, and only what lies inside `<...>` changes.
pub fn link(data: &[u8]) {
    let header = text(data);
    let repo = RepoName::parse("octo-org/hello.world").expect("valid");
    let target = LinkTarget {
        api_base: "https://api.github.com",
        repo: &repo,
        repo_id: Some(7),
        local_prefix: "/api/github",
    };
    let rewritten = rewrite_link_header(&header, &target);
    if !header.contains('<') {
        assert_eq!(rewritten, header);
    }
}

/// Deploy events: a draft from the input's lines is either refused naming
/// a field, or accepted and unchanged when stored and read back.
pub fn deploy_event(data: &[u8]) {
    let raw = text(data);
    let mut lines = raw.split('\n');
    let mut next = || lines.next().map(str::to_owned);
    let draft = DeployEventDraft {
        id: next(),
        sha: next().unwrap_or_default(),
        slot: next(),
        outcome: next().unwrap_or_default(),
        duration_s: next().and_then(|s| s.parse().ok()),
        deployed_at: next(),
        pr_number: next().and_then(|s| s.parse().ok()),
        pr_title: next(),
        origin_ips: lines.map(str::to_owned).collect(),
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    match DeployEvent::parse(draft, now) {
        Ok(event) => {
            assert!(event.id().is_none_or(|id| id.chars().count() <= 128));
            assert!(event.deployed_at() >= UNIX_EPOCH, "before 1970");
            let stored = DeployEventDraft {
                id: event.id().map(str::to_owned),
                sha: event.sha().to_owned(),
                slot: event.slot().map(str::to_owned),
                outcome: event.outcome().as_str().to_owned(),
                duration_s: event.duration_s(),
                // Read back at its own instant: `deployed_at` defaults to it.
                deployed_at: None,
                pr_number: event.pr_number(),
                pr_title: event.pr_title().map(str::to_owned),
                origin_ips: event.origin_ips().to_vec(),
            };
            let again = DeployEvent::parse(stored, event.deployed_at()).expect("still valid");
            assert_eq!(again.key(), event.key());
            assert_eq!(again, event);
        }
        Err(err) => assert!(err.to_string().starts_with(err.field()), "{err}"),
    }
}

/// TTLs: any key gets a TTL from the default policy, never zero.
pub fn ttl(data: &[u8]) {
    let raw = text(data);
    let (path, query) = raw.split_once('?').unwrap_or((&raw, ""));
    if let Ok(path) = GithubPath::parse(path) {
        let key = CacheKey::for_request(&path, &NormalisedQuery::parse(query));
        assert!(!TtlPolicy::default().ttl_for(&key).is_zero());
    }
}
