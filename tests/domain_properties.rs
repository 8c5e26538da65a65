//! Property tests for the domain's parsers and rules: invariants that hold
//! for every input, checked over generated ones (proptest, 256 cases per
//! property). Each says what a client or operator relies on — one cache key
//! per resource, no traversal in any encoding, pagination staying on
//! chimney — rather than how the code computes it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chimney::domain::{
    CacheKey, DEFAULT_PROXY_PATHS, DeployEvent, DeployEventDraft, Freshness, GithubPath,
    IfNoneMatch, LinkTarget, MAX_PATH_BYTES, NormalisedQuery, PathError, PathPolicy, RepoName,
    TtlPolicy, TtlRule, rewrite_link_header,
};
use percent_encoding::percent_decode_str;
use proptest::prelude::*;

/// The keys CONTRACT 3.4 says are forwarded, in the contract's own words.
const FORWARDED: [&str; 14] = [
    "state",
    "per_page",
    "page",
    "sort",
    "direction",
    "since",
    "until",
    "status",
    "sha",
    "ref",
    "path",
    "labels",
    "branch",
    "event",
];

/// The default case count; failures are reported, not written to a
/// regressions file (proptest cannot place one beside an integration test).
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- paths

/// A segment of unreserved characters that is not only dots.
fn plain_segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~-]{0,11}[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,11}"
}

fn plain_path() -> impl Strategy<Value = String> {
    prop::collection::vec(plain_segment(), 1..6)
        .prop_map(|segments| segments.iter().map(|s| format!("/{s}")).collect::<String>())
}

/// `text` with each character percent-encoded or not, as `choices` say,
/// in upper or lower case hex.
fn encode_some(text: &str, choices: &[(bool, bool)]) -> String {
    text.bytes()
        .zip(choices.iter().cycle())
        .map(
            |(byte, &(encode, upper))| match (encode && byte != b'/', upper) {
                (false, _) => char::from(byte).to_string(),
                (true, true) => format!("%{byte:02X}"),
                (true, false) => format!("%{byte:02x}"),
            },
        )
        .collect()
}

/// Percent-encodes every byte of `text`, `rounds` times (`.` -> `%2E` ->
/// `%252E` -> ...).
fn encode_rounds(text: &str, rounds: usize) -> String {
    (0..rounds).fold(text.to_owned(), |layer, _| {
        layer.bytes().map(|b| format!("%{b:02X}")).collect()
    })
}

/// Every layer a downstream could see by decoding again and again.
fn decoded_layers(path: &str) -> Vec<String> {
    let mut layers = vec![path.to_owned()];
    loop {
        let last = layers.last().expect("one layer");
        let next = percent_decode_str(last).decode_utf8_lossy().into_owned();
        if &next == last {
            return layers;
        }
        layers.push(next);
    }
}

/// A path some default pattern allows, `*` filled in.
fn dashboard_path() -> impl Strategy<Value = String> {
    (
        prop::sample::select(DEFAULT_PROXY_PATHS.to_vec()),
        plain_segment(),
    )
        .prop_map(|(pattern, segment)| pattern.replace('*', &segment))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn canonical_paths_are_fixed_points(raw in ".{0,80}|(/[ -~]{0,20}){0,4}|(/([a-z.]|%[0-9a-fA-F]{2}|%25[0-9a-fA-F]{2}){0,10}){1,4}") {
        if let Ok(path) = GithubPath::parse(&raw) {
            prop_assert_eq!(GithubPath::parse(path.as_str()), Ok(path));
        }
    }

    #[test]
    fn percent_encoded_variants_are_one_path_and_one_key(
        plain in plain_path(),
        choices in prop::collection::vec(any::<(bool, bool)>(), 1..40),
        query in "(state=open|page=[0-9])?",
    ) {
        let variant = encode_some(&plain, &choices);
        let canonical = GithubPath::parse(&plain).expect("a plain path is valid");
        prop_assert_eq!(canonical.as_str(), plain.as_str());
        let parsed = GithubPath::parse(&variant);
        prop_assert_eq!(parsed.as_ref(), Ok(&canonical), "variant {}", variant);
        let query = NormalisedQuery::parse(&query);
        prop_assert_eq!(
            CacheKey::for_request(&parsed.expect("valid"), &query),
            CacheKey::for_request(&canonical, &query)
        );
    }

    #[test]
    fn dot_segments_are_refused_at_any_depth_of_encoding(
        before in prop::collection::vec(plain_segment(), 0..3),
        after in prop::collection::vec(plain_segment(), 0..3),
        dots in "\\.{1,2}",
        // Every byte encoded each round triples the length: past five
        // rounds the path is refused as too long first.
        rounds in 0usize..=5,
        trailing_slash in any::<bool>(),
    ) {
        let mut raw: String = before.iter().map(|s| format!("/{s}")).collect();
        raw.push('/');
        raw.push_str(&encode_rounds(&dots, rounds));
        raw.extend(after.iter().map(|s| format!("/{s}")));
        if trailing_slash {
            raw.push('/');
        }
        prop_assert_eq!(GithubPath::parse(&raw), Err(PathError::DotDot), "{}", raw);
    }

    #[test]
    fn dots_inside_a_segment_are_kept(
        head in "[a-z0-9]{0,4}",
        dots in "\\.{1,4}",
        tail in "[a-z0-9]{0,4}",
    ) {
        prop_assume!(!(head.is_empty() && tail.is_empty()));
        let raw = format!("/compare/{head}{dots}{tail}");
        prop_assert_eq!(GithubPath::parse(&raw).map(|p| p.as_str().to_owned()), Ok(raw));
    }

    #[test]
    fn longer_than_the_limit_is_too_long_whatever_else_is_wrong(
        filler in "[ -~]{1,40}",
        extra in 1usize..64,
    ) {
        let mut raw = String::from("/");
        while raw.len() < MAX_PATH_BYTES + extra {
            raw.push_str(&filler);
        }
        prop_assert_eq!(GithubPath::parse(&raw), Err(PathError::TooLong));
    }

    #[test]
    fn accepted_paths_are_bounded_printable_and_free_of_traversal_and_control_characters(
        raw in "(/([ -~]|%[0-9a-fA-F]{2}|%25[0-9a-fA-F]{2}|[\\x{0}-\\x{1f}\\x{7f}-\\x{a0}é]){0,12}){1,4}",
    ) {
        if let Ok(path) = GithubPath::parse(&raw) {
            let text = path.as_str();
            prop_assert!(text.starts_with('/'));
            prop_assert!(text.len() <= MAX_PATH_BYTES);
            prop_assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{}", text);
            prop_assert!(!text.contains("//"), "{}", text);
            // What the contract promises holds however often it is decoded.
            for layer in &decoded_layers(text) {
                prop_assert!(!layer.chars().any(char::is_control), "{:?}", layer);
                prop_assert!(
                    !layer.split('/').any(|s| s == "." || s == ".."),
                    "{:?} in {}", layer, text
                );
            }
        }
    }

    #[test]
    fn the_path_policy_does_not_depend_on_the_encoding(
        plain in prop_oneof![plain_path(), dashboard_path()],
        choices in prop::collection::vec(any::<(bool, bool)>(), 1..40),
    ) {
        let policy = PathPolicy::default();
        prop_assume!(plain != "/");
        let variant = GithubPath::parse(&encode_some(&plain, &choices)).expect("valid");
        let plain = GithubPath::parse(&plain).expect("valid");
        prop_assert_eq!(policy.allows(&variant), policy.allows(&plain));
    }

    #[test]
    fn a_pattern_matches_its_own_shape_and_nothing_longer(
        segments in prop::collection::vec(plain_segment(), 1..5),
        stars in prop::collection::vec(any::<bool>(), 5),
        extra in plain_segment(),
    ) {
        let pattern: String = segments
            .iter()
            .zip(&stars)
            .map(|(s, &star)| if star { "/*".to_owned() } else { format!("/{s}") })
            .collect();
        let path: String = segments.iter().map(|s| format!("/{s}")).collect();
        let exact = PathPolicy::parse([pattern.as_str()]).expect("valid pattern");
        let rest = PathPolicy::parse([format!("{pattern}/**")]).expect("valid pattern");
        let path_ok = GithubPath::parse(&path).expect("valid");
        let longer = GithubPath::parse(&format!("{path}/{extra}")).expect("valid");
        prop_assert!(exact.allows(&path_ok));
        prop_assert!(!exact.allows(&longer));
        prop_assert!(rest.allows(&path_ok));
        prop_assert!(rest.allows(&longer));
        // An encoded slash makes a segment two, never smuggling one past a `*`.
        let smuggled = GithubPath::parse(&format!("{path}%2F{extra}")).expect("valid");
        prop_assert!(!exact.allows(&smuggled));
    }
}

// ---------------------------------------------------------------- queries

fn query_pair() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            3 => prop::sample::select(FORWARDED.to_vec()).prop_map(str::to_owned),
            1 => "[a-z_]{1,8}",
            1 => ".{0,6}",
        ],
        ".{0,8}",
    )
}

fn encode_query(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn decode_query(query: &NormalisedQuery) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_str().as_bytes())
        .into_owned()
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn query_order_does_not_matter_for_distinct_keys(
        (pairs, shuffled) in prop::collection::vec(query_pair(), 0..10).prop_flat_map(|pairs| {
            let mut distinct: Vec<(String, String)> = Vec::new();
            for (k, v) in pairs {
                if !distinct.iter().any(|(seen, _)| *seen == k) {
                    distinct.push((k, v));
                }
            }
            (Just(distinct.clone()), Just(distinct).prop_shuffle())
        }),
    ) {
        prop_assert_eq!(
            NormalisedQuery::parse(&encode_query(&pairs)),
            NormalisedQuery::parse(&encode_query(&shuffled))
        );
    }

    #[test]
    fn each_forwarded_key_keeps_its_last_value_and_nothing_else_survives(
        pairs in prop::collection::vec(query_pair(), 0..12),
    ) {
        let normalised = NormalisedQuery::parse(&encode_query(&pairs));
        let got = decode_query(&normalised);
        let mut expected: Vec<(String, String)> = FORWARDED
            .iter()
            .filter_map(|key| {
                pairs
                    .iter()
                    .rev()
                    .find(|(k, _)| k == key)
                    .map(|(k, v)| (k.clone(), v.clone()))
            })
            .collect();
        expected.sort();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn normalising_is_idempotent_and_ignores_junk(
        raw in ".{0,60}",
        junk_key in "[a-z]{1,8}",
        junk_value in ".{0,8}",
    ) {
        let once = NormalisedQuery::parse(&raw);
        prop_assert_eq!(NormalisedQuery::parse(once.as_str()), once.clone());
        prop_assume!(!FORWARDED.contains(&junk_key.as_str()));
        let junk = encode_query(&[(junk_key, junk_value)]);
        prop_assert_eq!(NormalisedQuery::parse(&format!("{junk}&{raw}")), once);
    }
}

// ---------------------------------------------------------------- ETags

/// An opaque tag: quoted `etagc` characters (RFC 9110 §8.8.3).
fn opaque_tag() -> impl Strategy<Value = String> {
    "[!#-~]{0,12}".prop_map(|body| format!("\"{body}\""))
}

fn weak(tag: &str, is_weak: bool) -> String {
    if is_weak {
        format!("W/{tag}")
    } else {
        tag.to_owned()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn weak_comparison_ignores_w_on_either_side(
        tag in opaque_tag(),
        sent_weak in any::<bool>(),
        stored_weak in any::<bool>(),
    ) {
        let sent = weak(&tag, sent_weak);
        let stored = weak(&tag, stored_weak);
        let inm = IfNoneMatch::parse([sent.as_str()]).expect("a tag");
        prop_assert!(inm.matches(&stored));
        // Symmetric: swapping the sides gives the same answer.
        let back = IfNoneMatch::parse([stored.as_str()]).expect("a tag");
        prop_assert!(back.matches(&sent));
    }

    #[test]
    fn a_list_matches_exactly_its_members(
        tags in prop::collection::vec((opaque_tag(), any::<bool>()), 1..6),
        other in opaque_tag(),
        separators in prop::collection::vec("[ \t]{0,2},[ \t]{0,2}", 5),
        split_at in 0usize..6,
    ) {
        let written: Vec<String> = tags.iter().map(|(t, w)| weak(t, *w)).collect();
        let mut header = written[0].clone();
        for (tag, sep) in written.iter().skip(1).zip(&separators) {
            header.push_str(sep);
            header.push_str(tag);
        }
        let inm = IfNoneMatch::parse([header.as_str()]).expect("tags");
        for (tag, is_weak) in &tags {
            prop_assert!(inm.matches(&weak(tag, !is_weak)), "{} in {}", tag, header);
        }
        let member = tags.iter().any(|(t, _)| *t == other);
        prop_assert_eq!(inm.matches(&other), member);
        // Split over repeated header lines, the list means the same.
        let split = split_at.min(written.len());
        let (first, second) = written.split_at(split);
        let lines = [first.join(", "), second.join(", ")];
        let repeated = IfNoneMatch::parse(lines.iter().map(String::as_str)).expect("tags");
        prop_assert_eq!(repeated.matches(&other), member);
    }

    #[test]
    fn a_star_element_matches_every_representation(
        before in prop::collection::vec(opaque_tag(), 0..3),
        stored in opaque_tag(),
    ) {
        let mut elements = before;
        elements.push("*".to_owned());
        let header = elements.join(", ");
        let inm = IfNoneMatch::parse([header.as_str()]).expect("star");
        prop_assert!(inm.matches(&stored));
        prop_assert!(inm.matches(&weak(&stored, true)));
    }

    #[test]
    fn any_header_text_parses_without_panicking(values in prop::collection::vec(".{0,40}", 0..3)) {
        if let Some(inm) = IfNoneMatch::parse(values.iter().map(String::as_str)) {
            let _ = inm.matches("\"x\"");
        }
    }
}

// ---------------------------------------------------------------- Link

const API_BASE: &str = "https://api.github.com";
const SERVED: &str = "octo-org/hello.world";

fn served() -> RepoName {
    RepoName::parse(SERVED).expect("valid repo")
}

fn target(repo: &RepoName, repo_id: Option<u64>) -> LinkTarget<'_> {
    LinkTarget {
        api_base: API_BASE,
        repo,
        repo_id,
        local_prefix: "/api/github",
    }
}

/// A repository path and query as GitHub's page links carry them.
fn tail_and_query() -> impl Strategy<Value = (String, String)> {
    (
        "(/[a-z0-9_-]{1,8}){0,3}",
        "(\\?[a-z_]{1,6}=[a-z0-9]{1,4}(&[a-z_]{1,6}=[a-z0-9]{1,4}){0,2})?",
    )
}

/// `text` in a mix of upper and lower case.
fn recase(text: &str, upper: &[bool]) -> String {
    text.chars()
        .zip(upper.iter().cycle())
        .map(|(c, &up)| {
            if up {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// The header with the inside of every `<...>` removed.
fn outside_brackets(header: &str) -> String {
    let mut out = String::new();
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>').map(|c| open + c) else {
            break;
        };
        out.push_str(&rest[..=open]);
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn links_into_the_served_repository_point_at_api_github(
        (tail, query) in tail_and_query(),
        upper in prop::collection::vec(any::<bool>(), 1..20),
        rel in "(next|prev|last|first)",
    ) {
        let repo = served();
        let url = format!("{API_BASE}/repos/{}{tail}{query}", recase(SERVED, &upper));
        let header = format!("<{url}>; rel=\"{rel}\"");
        let local_tail = if tail.is_empty() { "/" } else { tail.as_str() };
        prop_assert_eq!(
            rewrite_link_header(&header, &target(&repo, None)),
            format!("</api/github{local_tail}{query}>; rel=\"{rel}\"")
        );
    }

    #[test]
    fn repository_id_links_are_local_only_for_the_served_id(
        (tail, query) in tail_and_query(),
        link_id in 1u64..1000,
        served_id in prop::option::of(1u64..1000),
    ) {
        let repo = served();
        let header = format!("<{API_BASE}/repositories/{link_id}{tail}{query}>; rel=\"next\"");
        let rewritten = rewrite_link_header(&header, &target(&repo, served_id));
        if served_id == Some(link_id) {
            let local_tail = if tail.is_empty() { "/" } else { tail.as_str() };
            prop_assert_eq!(rewritten, format!("</api/github{local_tail}{query}>; rel=\"next\""));
        } else {
            prop_assert_eq!(rewritten, header);
        }
    }

    #[test]
    fn links_to_other_repositories_or_hosts_are_untouched(
        (tail, query) in tail_and_query(),
        other in "[a-z0-9-]{1,10}/[a-z0-9._-]{1,12}",
        host in "(https://api\\.github\\.com\\.evil\\.example|https://evil\\.example|http://api\\.github\\.com)",
        suffix in "[a-z0-9-]{1,4}",
    ) {
        let repo = served();
        prop_assume!(!repo.same_as(&other));
        for url in [
            format!("{API_BASE}/repos/{other}{tail}{query}"),
            format!("{API_BASE}/repos/{SERVED}{suffix}{tail}{query}"),
            format!("{host}/repos/{SERVED}{tail}{query}"),
        ] {
            let header = format!("<{url}>; rel=\"next\"");
            prop_assert_eq!(rewrite_link_header(&header, &target(&repo, Some(7))), header);
        }
    }

    #[test]
    fn only_the_urls_inside_brackets_ever_change(header in ".{0,200}", id in prop::option::of(0u64..10)) {
        let repo = served();
        let rewritten = rewrite_link_header(&header, &target(&repo, id));
        prop_assert_eq!(outside_brackets(&rewritten), outside_brackets(&header));
        if !header.contains('<') {
            prop_assert_eq!(rewritten, header);
        }
    }

    #[test]
    fn link_headers_built_from_link_parts_never_panic(
        parts in prop::collection::vec(
            prop_oneof![
                Just("<".to_owned()),
                Just(">".to_owned()),
                Just(API_BASE.to_owned()),
                Just("/repos/".to_owned()),
                Just("/repositories/".to_owned()),
                Just(SERVED.to_owned()),
                Just("?".to_owned()),
                "[0-9]{1,20}",
                ".{0,3}",
            ],
            0..16,
        ),
    ) {
        let repo = served();
        let header: String = parts.concat();
        let _ = rewrite_link_header(&header, &target(&repo, Some(42)));
    }
}

// ---------------------------------------------------------------- TTLs

fn ttl_rule() -> impl Strategy<Value = TtlRule> {
    (
        "(/[a-z]{1,5}){0,2}",
        prop::option::of("[a-z_]{1,5}=[a-z]{1,5}"),
        31u64..3600,
    )
        .prop_map(|(path, query, secs)| TtlRule {
            path,
            query,
            ttl: Duration::from_secs(secs),
        })
}

fn cache_key() -> impl Strategy<Value = CacheKey> {
    (
        "(/[a-z]{1,5}){1,3}",
        prop::collection::vec(query_pair(), 0..3),
    )
        .prop_map(|(path, pairs)| {
            CacheKey::for_request(
                &GithubPath::parse(&path).expect("valid"),
                &NormalisedQuery::parse(&encode_query(&pairs)),
            )
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_first_matching_rule_wins(
        rules in prop::collection::vec(ttl_rule(), 0..5),
        later in prop::collection::vec(ttl_rule(), 0..3),
        key in cache_key(),
        secs in 31u64..100_000,
    ) {
        // A rule made from the key itself always matches it, so put first
        // it decides.
        let mine = TtlRule {
            path: key.path().to_owned(),
            query: Some(key.query().to_owned()),
            ttl: Duration::from_secs(secs),
        };
        let mut first = vec![mine.clone()];
        first.extend(rules.iter().cloned());
        prop_assert_eq!(TtlPolicy::new(first).ttl_for(&key), Duration::from_secs(secs));
        // Rule TTLs are never 30 s, so 30 s means no rule matched: then a
        // matching rule put last decides; otherwise rules put after the
        // policy change nothing.
        let base = TtlPolicy::new(rules.clone()).ttl_for(&key);
        let mut extended = rules.clone();
        if base == Duration::from_secs(30) {
            extended.push(mine);
            prop_assert_eq!(TtlPolicy::new(extended).ttl_for(&key), Duration::from_secs(secs));
        } else {
            extended.push(mine);
            extended.extend(later);
            prop_assert_eq!(TtlPolicy::new(extended).ttl_for(&key), base);
        }
    }

    #[test]
    fn a_key_no_rule_matches_gets_thirty_seconds(
        rules in prop::collection::vec(ttl_rule(), 0..5),
        key in cache_key(),
    ) {
        // Upper-case letters never occur in these keys, so these rules
        // never match.
        let unmatched: Vec<TtlRule> = rules
            .into_iter()
            .map(|mut r| {
                r.path.push('X');
                r
            })
            .collect();
        prop_assert_eq!(TtlPolicy::new(unmatched).ttl_for(&key), Duration::from_secs(30));
        prop_assert_eq!(TtlPolicy::new(Vec::new()).ttl_for(&key), Duration::from_secs(30));
    }

    #[test]
    fn a_query_rule_looks_only_at_the_query(segment in "[a-z]{1,5}", value in "[a-z]{1,5}") {
        let wanted = format!("state={value}");
        let policy = TtlPolicy::new(vec![TtlRule {
            path: String::new(),
            query: Some(wanted.clone()),
            ttl: Duration::from_secs(999),
        }]);
        let in_path = CacheKey::for_request(
            &GithubPath::parse(&format!("/{segment}/{wanted}")).expect("valid"),
            &NormalisedQuery::default(),
        );
        prop_assert_eq!(policy.ttl_for(&in_path), Duration::from_secs(30));
        let in_query = CacheKey::for_request(
            &GithubPath::parse(&format!("/{segment}")).expect("valid"),
            &NormalisedQuery::parse(&wanted),
        );
        prop_assert_eq!(policy.ttl_for(&in_query), Duration::from_secs(999));
    }

    #[test]
    fn freshness_only_ever_ages(ttl in 0u64..200_000, a in 0u64..200_000, b in 0u64..200_000) {
        let rank = |f: Freshness| match f {
            Freshness::Fresh => 0,
            Freshness::Stale => 1,
            Freshness::TooOld => 2,
        };
        let ttl = Duration::from_secs(ttl);
        let (younger, older) = (a.min(b), a.max(b));
        prop_assert!(
            rank(Freshness::at(Duration::from_secs(younger), ttl))
                <= rank(Freshness::at(Duration::from_secs(older), ttl))
        );
        prop_assert_eq!(Freshness::at(Duration::ZERO, ttl) == Freshness::Fresh, !ttl.is_zero());
    }
}

// ---------------------------------------------------------------- deploy events

/// Text with no whitespace or control characters, multi-byte included.
fn token(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[!-~é漢🚀]{{1,{max}}}")).expect("a valid regex")
}

/// An RFC 3339 date-time between 1970 and 9999 with a random offset and
/// fraction, and the instant it names.
fn deployed_at() -> impl Strategy<Value = (String, SystemTime)> {
    (
        0i64..253_402_300_800 - 86_400,
        0u32..1_000_000_000,
        -(23 * 60 + 59)..=(23 * 60 + 59i32),
        0usize..=9,
    )
        .prop_map(|(secs, nanos, offset_min, digits)| {
            let utc = time::OffsetDateTime::from_unix_timestamp(secs).expect("in range");
            let nanos = nanos / 10u32.pow(9 - u32::try_from(digits).unwrap_or(9));
            let nanos = nanos * 10u32.pow(9 - u32::try_from(digits).unwrap_or(9));
            let utc = utc.replace_nanosecond(nanos).expect("valid");
            let offset = time::UtcOffset::from_whole_seconds(offset_min * 60).expect("valid");
            let local = utc.to_offset(offset);
            let fraction = if digits == 0 {
                String::new()
            } else {
                format!(".{:09}", local.nanosecond())[..=digits].to_owned()
            };
            let sign = if offset_min < 0 { '-' } else { '+' };
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}{sign}{:02}:{:02}",
                local.year(),
                u8::from(local.month()),
                local.day(),
                local.hour(),
                local.minute(),
                local.second(),
                offset_min.abs() / 60,
                offset_min.abs() % 60,
            );
            let since = Duration::new(u64::try_from(secs).expect("positive"), nanos);
            (text, UNIX_EPOCH + since)
        })
}

fn padded(text: &str, pad: &str) -> String {
    format!("{pad}{text}{pad}")
}

prop_compose! {
    fn valid_draft()(
        id in prop::option::of(token(128)),
        sha in token(64),
        slot in prop::option::of(token(64)),
        success in any::<bool>(),
        duration_s in prop::option::of(any::<u64>()),
        at in prop::option::of(deployed_at()),
        pr_number in prop::option::of(1u64..1_000_000),
        pr_title in prop::option::of("[^\\s][\\PC\n]{0,60}[^\\s]"),
        origin_ips in prop::collection::vec(token(40), 0..4),
        pad in "[ \t\n]{0,2}",
    ) -> (DeployEventDraft, Option<SystemTime>) {
        let draft = DeployEventDraft {
            id: id.map(|id| padded(&id, &pad)),
            sha: padded(&sha, &pad),
            slot: slot.map(|slot| padded(&slot, &pad)),
            outcome: if success { "success" } else { "failure" }.to_owned(),
            duration_s,
            deployed_at: at.as_ref().map(|(text, _)| text.clone()),
            pr_number,
            pr_title,
            origin_ips: origin_ips.iter().map(|o| padded(o, &pad)).collect(),
        };
        (draft, at.map(|(_, instant)| instant))
    }
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// The event written back as a draft, the way a deploy log stores it.
fn as_stored(event: &DeployEvent) -> DeployEventDraft {
    DeployEventDraft {
        id: event.id().map(str::to_owned),
        sha: event.sha().to_owned(),
        slot: event.slot().map(str::to_owned),
        outcome: event.outcome().as_str().to_owned(),
        duration_s: event.duration_s(),
        deployed_at: Some(humantime::format_rfc3339_nanos(event.deployed_at()).to_string()),
        pr_number: event.pr_number(),
        pr_title: event.pr_title().map(str::to_owned),
        origin_ips: event.origin_ips().to_vec(),
    }
}

/// How many ways [`spoil`] knows of spoiling a draft.
const SPOILS: usize = 14;

/// Spoils one field of a valid draft in way `how`, returning the field the
/// error must name; `s` varies the bad value.
fn spoil(how: usize, d: &mut DeployEventDraft, s: &str) -> &'static str {
    match how {
        0 => {
            d.id = Some(format!("{}{s}", "i".repeat(129)));
            "id"
        }
        1 => {
            d.sha = " \t ".to_owned();
            "sha"
        }
        2 => {
            d.sha = format!("a b{s}");
            "sha"
        }
        3 => {
            d.sha = format!("a\u{7}{s}");
            "sha"
        }
        4 => {
            d.sha = format!("{}{s}", "f".repeat(65));
            "sha"
        }
        5 => {
            d.slot = Some(format!("blue green{s}"));
            "slot"
        }
        6 => {
            d.outcome = format!("ok{s}");
            "outcome"
        }
        7 => {
            d.outcome = format!("Success{s}");
            "outcome"
        }
        8 => {
            d.deployed_at = Some(format!("yesterday{s}"));
            "deployed_at"
        }
        9 => {
            d.deployed_at = Some("1969-12-31T23:59:59Z".to_owned());
            "deployed_at"
        }
        10 => {
            d.pr_title = Some(format!("{}{s}", "t".repeat(1025)));
            "pr_title"
        }
        11 => {
            d.origin_ips = vec!["1.2.3.4".to_owned(); 65];
            "origin_ips"
        }
        12 => {
            d.origin_ips.push(format!("10.0.0.1 x{s}"));
            "origin_ips"
        }
        _ => {
            d.origin_ips.push(String::new());
            "origin_ips"
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_valid_event_is_accepted_as_given_and_survives_storage((draft, instant) in valid_draft()) {
        let event = DeployEvent::parse(draft.clone(), now()).expect("a valid draft");
        prop_assert_eq!(event.id(), draft.id.as_deref().map(str::trim));
        prop_assert_eq!(event.sha(), draft.sha.trim());
        prop_assert_eq!(event.slot(), draft.slot.as_deref().map(str::trim));
        prop_assert_eq!(event.outcome().as_str(), draft.outcome.as_str());
        prop_assert_eq!(event.deployed_at(), instant.unwrap_or_else(now));
        prop_assert_eq!(event.pr_title(), draft.pr_title.as_deref());
        let origins: Vec<&str> = draft.origin_ips.iter().map(|o| o.trim()).collect();
        prop_assert_eq!(event.origin_ips(), origins.as_slice());
        // Stored and read back (at another time), it is the same event.
        let again = DeployEvent::parse(as_stored(&event), UNIX_EPOCH).expect("still valid");
        prop_assert_eq!(again.key(), event.key());
        prop_assert_eq!(again, event);
    }

    #[test]
    fn an_invalid_field_is_refused_naming_that_field(
        (draft, _) in valid_draft(),
        how in 0..SPOILS,
        suffix in "[a-z]{0,3}",
    ) {
        let mut draft = draft;
        let field = spoil(how, &mut draft, &suffix);
        let err = DeployEvent::parse(draft, now()).expect_err("spoiled");
        prop_assert_eq!(err.field(), field);
        let message = err.to_string();
        prop_assert!(message.starts_with(field), "{}", message);
        prop_assert!(message.chars().count() < 200, "{}", message);
    }

    #[test]
    fn an_id_is_accepted_up_to_128_characters(
        (draft, _) in valid_draft(),
        id in token(200),
    ) {
        let mut draft = draft;
        let length = id.chars().count();
        draft.id = Some(id);
        let parsed = DeployEvent::parse(draft, now());
        prop_assert_eq!(parsed.is_ok(), length <= 128, "{} characters: {:?}", length, parsed);
    }

    #[test]
    fn events_without_an_id_differ_exactly_when_their_identity_does(
        (a, _) in valid_draft(),
        (b, _) in valid_draft(),
        copy in prop::collection::vec(any::<bool>(), 4),
    ) {
        let (mut a, mut b) = (a, b);
        a.id = None;
        b.id = None;
        // Share some of the four identity fields, so equal keys occur.
        if copy[0] { b.sha = a.sha.trim().to_owned(); }
        if copy[1] { b.slot = a.slot.clone(); }
        if copy[2] { b.outcome = a.outcome.clone(); }
        if copy[3] { b.deployed_at = a.deployed_at.clone(); }
        let ea = DeployEvent::parse(a, now()).expect("valid");
        let eb = DeployEvent::parse(b, now()).expect("valid");
        let same = ea.sha() == eb.sha()
            && ea.slot() == eb.slot()
            && ea.outcome() == eb.outcome()
            && ea.deployed_at() == eb.deployed_at();
        prop_assert_eq!(ea.key() == eb.key(), same);
    }
}
