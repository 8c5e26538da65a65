//! `GET /api/github/{path}` when GitHub behaves: caching, conditional
//! requests, revalidation, pass-through of GitHub's errors, query
//! normalisation and the headers chimney sends and returns (CONTRACT 3).

use chimney::domain::RepoName;

use crate::helpers::{
    BRANCH_PROTECTION, GIT_REFS, PAGINATE_ISSUES, RENAME_REPOSITORY, spawn_app, spawn_app_for,
    spawn_app_with, stale_immediately,
};

/// Recording #9, plain text with its own Content-Type.
const README: &str = "/contents/README.md";

/// Page 1 of the paginated issues (#2) and the alias GitHub uses for page 2
/// (#3).
const ISSUES_PAGE_1: &str = "/issues?per_page=3";
const ISSUES_PAGE_2_UPSTREAM: &str = "/repositories/515435940/issues?per_page=3&page=2";

fn link_targets(link: &str) -> Vec<(String, String)> {
    link.split(',')
        .filter_map(|part| {
            let url = part.split('<').nth(1)?.split('>').next()?;
            let rel = part.split("rel=\"").nth(1)?.split('"').next()?;
            Some((rel.to_owned(), url.to_owned()))
        })
        .collect()
}

fn link_for(link: &str, rel: &str) -> Option<String> {
    link_targets(link)
        .into_iter()
        .find(|(r, _)| r == rel)
        .map(|(_, url)| url)
}

#[tokio::test]
async fn first_get_is_a_miss_with_githubs_body_etag_content_type_and_rate_limit_headers() {
    let app = spawn_app().await;
    let upstream = app.upstream(README);

    let response = app.get_github(README).await;

    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.x_cache(), "MISS");
    assert_eq!(response.header("x-cache-age"), Some("0"));
    assert_eq!(response.body, app.github.body(&upstream));
    assert_eq!(
        response.header("etag"),
        Some(app.github.etag(&upstream).as_str())
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/vnd.github.v3.raw; charset=utf-8")
    );
    assert_eq!(response.header("x-ratelimit-remaining"), Some("4964"));
    assert_eq!(
        response.header("x-ratelimit-reset"),
        Some(app.github.rate_limit_reset().to_string().as_str())
    );
    assert_eq!(app.github.requests_for(&upstream), 1);
}

#[tokio::test]
async fn second_identical_get_is_a_hit_without_a_new_upstream_request() {
    let app = spawn_app().await;
    let upstream = app.upstream(README);
    let first = app.get_github(README).await;

    let second = app.get_github(README).await;

    assert_eq!(second.status, 200);
    assert_eq!(second.x_cache(), "HIT");
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("etag"), first.header("etag"));
    assert_eq!(second.header("content-type"), first.header("content-type"));
    let age: u64 = second
        .header("x-cache-age")
        .expect("X-Cache-Age on a hit")
        .parse()
        .expect("X-Cache-Age is whole seconds");
    assert!(age <= 1, "a just-fetched entry is {age} s old");
    assert_eq!(app.github.requests_for(&upstream), 1);
}

#[tokio::test]
async fn proxy_responses_allow_any_origin() {
    let app = spawn_app().await;

    let miss = app.get_github(README).await;
    let hit = app.get_github(README).await;

    for response in [&miss, &hit] {
        assert_eq!(
            response.header("access-control-allow-origin"),
            Some("*"),
            "on {}",
            response.x_cache()
        );
    }
}

#[tokio::test]
async fn proxy_responses_carry_a_trace_id() {
    let app = spawn_app().await;

    let miss = app.get_github(README).await;
    let hit = app.get_github(README).await;

    for response in [&miss, &hit] {
        assert!(
            response
                .header("x-trace-id")
                .is_some_and(|id| !id.trim().is_empty()),
            "X-Trace-ID missing on {} response",
            response.x_cache()
        );
    }
}

/// Fetches README once, then asks again with `If-None-Match` built from its
/// ETag; a fresh entry must answer 304 without asking GitHub.
async fn assert_fresh_entry_answers_304_for(if_none_match: impl Fn(&str) -> String) {
    let app = spawn_app().await;
    let upstream = app.upstream(README);
    let etag = app
        .get_github(README)
        .await
        .header("etag")
        .unwrap()
        .to_owned();

    let response = app
        .get_github_with_headers(README, &[("If-None-Match", &if_none_match(&etag))])
        .await;

    assert_eq!(response.status, 304, "{}", response.text());
    assert!(response.body.is_empty(), "a 304 has no body");
    assert_eq!(response.header("etag"), Some(etag.as_str()));
    assert_eq!(app.github.requests_for(&upstream), 1);
}

#[tokio::test]
async fn client_etag_matching_a_fresh_entry_is_answered_304_without_an_upstream_call() {
    assert_fresh_entry_answers_304_for(str::to_owned).await;
}

#[tokio::test]
async fn weak_client_etag_matching_a_fresh_entry_is_answered_304() {
    assert_fresh_entry_answers_304_for(|etag| format!("W/{etag}")).await;
}

#[tokio::test]
async fn client_etag_list_containing_the_entrys_etag_is_answered_304() {
    assert_fresh_entry_answers_304_for(|etag| format!("\"other\", W/\"another\", {etag}")).await;
}

#[tokio::test]
async fn client_if_none_match_star_on_a_fresh_entry_is_answered_304() {
    assert_fresh_entry_answers_304_for(|_| "*".to_owned()).await;
}

#[tokio::test]
async fn client_etag_not_matching_a_fresh_entry_gets_the_full_body_from_cache() {
    let app = spawn_app().await;
    let upstream = app.upstream(README);
    app.get_github(README).await;

    let response = app
        .get_github_with_headers(README, &[("If-None-Match", "\"not-the-etag\"")])
        .await;

    assert_eq!(response.status, 200);
    assert_eq!(response.x_cache(), "HIT");
    assert_eq!(response.body, app.github.body(&upstream));
    assert_eq!(app.github.requests_for(&upstream), 1);
}

#[tokio::test]
async fn stale_entry_is_revalidated_with_if_none_match_and_served_as_revalidated() {
    let app = spawn_app_with(|s| s.ttl = stale_immediately(README)).await;
    let upstream = app.upstream(README);
    let etag = app.github.etag(&upstream);
    let first = app.get_github(README).await;
    assert_eq!(first.x_cache(), "MISS");

    let second = app.get_github(README).await;

    assert_eq!(second.status, 200);
    assert_eq!(second.x_cache(), "REVALIDATED");
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("etag"), Some(etag.as_str()));
    assert_eq!(second.header("content-type"), first.header("content-type"));
    assert_eq!(second.header("x-cache-age"), Some("0"));
    assert_eq!(app.github.requests_for(&upstream), 2);
    let sent = app.github.last_request_headers(&upstream).unwrap();
    assert_eq!(
        sent.get("if-none-match").and_then(|v| v.to_str().ok()),
        Some(etag.as_str())
    );
    assert_eq!(
        app.github.statuses_for(&upstream),
        [Some(200), Some(304)],
        "the revalidation was answered 304 upstream"
    );
}

#[tokio::test]
async fn client_etag_against_a_stale_entry_is_answered_304_after_revalidation() {
    let app = spawn_app_with(|s| s.ttl = stale_immediately(README)).await;
    let upstream = app.upstream(README);
    let etag = app
        .get_github(README)
        .await
        .header("etag")
        .unwrap()
        .to_owned();

    let response = app
        .get_github_with_headers(README, &[("If-None-Match", &etag)])
        .await;

    assert_eq!(response.status, 304, "{}", response.text());
    assert!(response.body.is_empty());
    assert_eq!(app.github.requests_for(&upstream), 2);
    let sent = app.github.last_request_headers(&upstream).unwrap();
    assert_eq!(
        sent.get("if-none-match").and_then(|v| v.to_str().ok()),
        Some(etag.as_str())
    );
}

#[tokio::test]
async fn changed_upstream_body_replaces_the_stale_entry_and_is_cached() {
    let app = spawn_app_with(|s| {
        s.repo = RepoName::parse(GIT_REFS).unwrap();
        s.ttl = stale_immediately("/git/refs/");
    })
    .await;
    let rel = "/git/refs/";
    let upstream = app.upstream(rel);
    let old_etag = app.github.etag(&upstream);
    let old = app.get_github(rel).await;
    assert_eq!(old.body, app.github.body(&upstream));
    app.github.advance(&upstream);
    let new_etag = app.github.etag(&upstream);
    assert_ne!(old_etag, new_etag, "#17 differs from #16");

    let changed = app.get_github(rel).await;

    assert_eq!(changed.status, 200);
    assert_eq!(changed.body, app.github.body(&upstream));
    assert_ne!(changed.body, old.body);
    assert_eq!(changed.header("etag"), Some(new_etag.as_str()));
    let sent = app.github.last_request_headers(&upstream).unwrap();
    assert_eq!(
        sent.get("if-none-match").and_then(|v| v.to_str().ok()),
        Some(old_etag.as_str()),
        "the stale entry was revalidated conditionally"
    );

    let again = app.get_github(rel).await;

    assert_eq!(again.x_cache(), "REVALIDATED");
    assert_eq!(again.body, changed.body);
    let sent = app.github.last_request_headers(&upstream).unwrap();
    assert_eq!(
        sent.get("if-none-match").and_then(|v| v.to_str().ok()),
        Some(new_etag.as_str()),
        "the new representation was cached with its ETag"
    );
    assert_eq!(app.github.requests_for(&upstream), 3);
}

#[tokio::test]
async fn upstream_404_is_passed_through_with_githubs_body_and_cached_for_the_negative_ttl() {
    let app = spawn_app_for(BRANCH_PROTECTION).await;
    let rel = "/branches/main/protection";
    let upstream = app.upstream(rel);

    let first = app.get_github(rel).await;
    let second = app.get_github(rel).await;

    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(second.x_cache(), "HIT");
    for response in [&first, &second] {
        assert_eq!(response.status, 404);
        assert_eq!(response.body, app.github.body(&upstream));
        assert_eq!(response.json()["message"], "Branch not protected");
        assert_eq!(
            response.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }
    assert_eq!(
        app.github.requests_for(&upstream),
        1,
        "a 404 is cached for the negative TTL"
    );
}

#[tokio::test]
async fn with_a_zero_negative_ttl_a_404_is_asked_again_every_time() {
    let app = spawn_app_with(|s| s.negative_ttl = std::time::Duration::ZERO).await;
    let rel = "/issues/424242";
    let upstream = app.upstream(rel);

    let first = app.get_github(rel).await;
    let second = app.get_github(rel).await;

    for response in [&first, &second] {
        assert_eq!(response.status, 404);
        assert_eq!(response.json()["message"], "Not Found");
        assert_eq!(response.x_cache(), "MISS");
    }
    assert_eq!(app.github.requests_for(&upstream), 2);
}

#[tokio::test]
async fn a_redirect_out_of_the_served_repository_is_a_502_and_not_followed_or_cached() {
    // #11: the renamed repository answers 301 to `/repositories/{id}`, an id
    // chimney cannot tie to the repository it serves.
    let app = spawn_app_for(RENAME_REPOSITORY).await;
    let upstream = app.upstream("/");
    let location = app.github.header(&upstream, "location").unwrap();
    assert!(location.contains("/repositories/515436299"), "{location}");

    let first = app.get_github("/").await;
    let second = app.get_github("/").await;

    for response in [&first, &second] {
        response.assert_problem(502);
        assert!(
            response.json()["type"]
                .as_str()
                .unwrap()
                .ends_with("/upstream-redirect")
        );
        assert!(response.header("location").is_none());
        assert!(!response.text().contains("515436299"));
    }
    assert_eq!(
        app.github.requests_for(&upstream),
        2,
        "a redirect must not be cached"
    );
    assert_eq!(
        app.github.requests_for("/repositories/515436299"),
        0,
        "chimney must not follow GitHub's redirect itself"
    );
}

#[tokio::test]
async fn junk_query_parameters_are_dropped_and_never_reach_github() {
    let app = spawn_app().await;
    let upstream = app.upstream(README);

    let first = app
        .get_github(&format!("{README}?utm_source=mail&access_token=leak&_=1"))
        .await;
    let second = app.get_github(&format!("{README}?cachebuster=2")).await;

    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(second.x_cache(), "HIT", "junk must not split the cache");
    assert_eq!(app.github.requests_for(&upstream), 1);
    for request in app.github.requests() {
        assert!(
            !request.path_and_query.contains('?'),
            "forwarded a query: {}",
            request.path_and_query
        );
    }
}

#[tokio::test]
async fn differently_ordered_queries_share_one_entry_and_one_upstream_request() {
    let app = spawn_app_for(PAGINATE_ISSUES).await;

    let first = app.get_github("/issues?per_page=3&page=2").await;
    let second = app.get_github("/issues?page=2&per_page=3&utm=x").await;

    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(second.x_cache(), "HIT");
    assert_eq!(first.body, app.github.body(ISSUES_PAGE_2_UPSTREAM));
    assert_eq!(second.body, first.body);
    assert_eq!(app.github.requests_for(ISSUES_PAGE_2_UPSTREAM), 1);
}

#[tokio::test]
async fn only_allowed_query_parameters_are_forwarded_to_github() {
    let app = spawn_app().await;
    let upstream = app.upstream("/pulls?state=open&per_page=5&sort=updated");
    app.github
        .set_json(&upstream, &serde_json::json!([{ "number": 1 }]));

    let response = app
        .get_github("/pulls?utm_campaign=x&sort=updated&per_page=5&access_token=t&state=open")
        .await;

    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(app.github.requests_for(&upstream), 1);
    let sent = app.github.requests().pop().unwrap().path_and_query;
    let query = sent.split_once('?').map_or("", |(_, q)| q);
    let mut keys: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect();
    keys.sort();
    assert_eq!(keys, ["per_page", "sort", "state"], "forwarded {sent}");
}

#[tokio::test]
async fn a_repeated_query_key_keeps_its_last_value_as_github_reads_it() {
    let app = spawn_app().await;
    let upstream = app.upstream("/issues?labels=docs");
    app.github
        .set_json(&upstream, &serde_json::json!([{ "number": 7 }]));

    let first = app.get_github("/issues?labels=bug&labels=docs").await;
    let second = app.get_github("/issues?labels=docs").await;
    let third = app.get_github("/issues?labels=a&utm=x&labels=docs").await;

    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(second.x_cache(), "HIT");
    assert_eq!(third.x_cache(), "HIT");
    assert_eq!(app.github.requests_for(&upstream), 1);
    assert_eq!(
        app.github.requests().len(),
        1,
        "GitHub saw {:?}",
        app.github.requests()
    );
}

#[tokio::test]
async fn head_returns_the_headers_without_a_body_and_github_only_sees_get() {
    let app = spawn_app().await;
    let upstream = app.upstream(README);

    let head = app.head(&app.github_path(README)).await;

    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body");
    assert_eq!(
        head.header("etag"),
        Some(app.github.etag(&upstream).as_str())
    );
    assert_eq!(
        head.header("content-type"),
        Some("application/vnd.github.v3.raw; charset=utf-8")
    );
    let get = app.get_github(README).await;
    assert_eq!(get.x_cache(), "HIT");
    assert_eq!(get.body, app.github.body(&upstream));
    assert_eq!(app.github.requests_for(&upstream), 1);
    assert!(
        app.github
            .requests()
            .iter()
            .all(|r| r.method == poem::http::Method::GET),
        "upstream requests are GETs"
    );
}

#[tokio::test]
async fn client_authorization_is_never_forwarded_and_the_server_token_is_sent_as_bearer() {
    let app = spawn_app_with(|s| {
        s.github_token = Some(secrecy::SecretString::from("server-token-123"));
    })
    .await;
    let upstream = app.upstream(README);

    let response = app
        .get_github_with_headers(README, &[("Authorization", "Bearer client-secret-xyz")])
        .await;

    assert_eq!(response.status, 200);
    let sent = app.github.last_request_headers(&upstream).unwrap();
    let authorization: Vec<_> = sent
        .get_all("authorization")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(authorization, ["Bearer server-token-123"]);
    assert!(
        sent.iter()
            .all(|(_, v)| !v.to_str().unwrap_or("").contains("client-secret")),
        "the client's credentials reached GitHub"
    );
}

#[tokio::test]
async fn without_a_server_token_no_authorization_reaches_github() {
    let app = spawn_app().await;
    let upstream = app.upstream(README);

    app.get_github_with_headers(README, &[("Authorization", "Bearer client-secret-xyz")])
        .await;

    let sent = app.github.last_request_headers(&upstream).unwrap();
    assert!(sent.get("authorization").is_none(), "sent {sent:?}");
}

#[tokio::test]
async fn upstream_requests_ask_for_github_json_with_a_chimney_user_agent() {
    let app = spawn_app().await;
    let upstream = app.upstream(README);

    app.get_github_with_headers(
        README,
        &[
            ("Accept", "application/vnd.github.v3.raw"),
            ("User-Agent", "curl/8"),
        ],
    )
    .await;

    let sent = app.github.last_request_headers(&upstream).unwrap();
    let accept: Vec<_> = sent.get_all("accept").iter().collect();
    assert_eq!(accept, ["application/vnd.github+json"]);
    let user_agent = sent
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        user_agent.to_ascii_lowercase().contains("chimney"),
        "User-Agent was {user_agent:?}"
    );
}

#[tokio::test]
async fn hop_by_hop_headers_from_github_are_not_passed_on() {
    let app = spawn_app().await;
    let rel = "/labels";
    let upstream = app.upstream(rel);
    app.github.set_resource(
        &upstream,
        200,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("ETag", "\"hop\""),
            ("Keep-Alive", "timeout=5, max=100"),
            ("Proxy-Authenticate", "Basic realm=\"github\""),
            ("Trailer", "X-Checksum"),
            ("Connection", "X-Hop-Secret"),
            ("X-Hop-Secret", "must-not-leak"),
        ],
        "{}",
    );

    for response in [app.get_github(rel).await, app.get_github(rel).await] {
        assert_eq!(response.status, 200, "{}", response.text());
        for name in [
            "keep-alive",
            "proxy-authenticate",
            "trailer",
            "x-hop-secret",
        ] {
            assert!(
                response.header(name).is_none(),
                "{name} passed through on {}",
                response.x_cache()
            );
        }
        assert!(
            response
                .header_all("connection")
                .iter()
                .all(|v| !v.to_ascii_lowercase().contains("x-hop-secret")),
            "Connection passed through"
        );
    }
}

#[tokio::test]
async fn repeated_link_headers_from_github_are_all_kept() {
    let app = spawn_app().await;
    let rel = "/tags";
    let upstream = app.upstream(rel);
    let next = format!("<https://api.github.com{upstream}?page=2>; rel=\"next\"");
    let last = format!("<https://api.github.com{upstream}?page=9>; rel=\"last\"");
    app.github.set_resource(
        &upstream,
        200,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("ETag", "\"tags\""),
            ("Link", &next),
            ("Link", &last),
        ],
        "[]",
    );

    for response in [app.get_github(rel).await, app.get_github(rel).await] {
        let links = response.header_all("link").join(", ");
        assert_eq!(
            link_for(&links, "next"),
            Some(app.github_path("/tags?page=2")),
            "{} lost a Link: {links:?}",
            response.x_cache()
        );
        assert_eq!(
            link_for(&links, "last"),
            Some(app.github_path("/tags?page=9")),
            "{} lost a Link: {links:?}",
            response.x_cache()
        );
    }
}

#[tokio::test]
async fn link_header_points_back_at_chimney_and_its_next_page_is_served_through_it() {
    let app = spawn_app_for(PAGINATE_ISSUES).await;
    // GitHub's page links name the repository by id; chimney learns its id
    // from the repository's own answer.
    app.github.set_json(
        &app.upstream("/"),
        &serde_json::json!({ "id": 515435940, "full_name": PAGINATE_ISSUES }),
    );

    let page_1 = app.get_github(ISSUES_PAGE_1).await;

    assert_eq!(page_1.status, 200, "{}", page_1.text());
    let link = page_1.header("link").expect("page 1 has a Link header");
    assert!(
        !link.contains(app.github.origin()) && !link.contains("api.github.com"),
        "Link still points at GitHub: {link}"
    );
    let next = link_for(link, "next").expect("rel=next");
    let last = link_for(link, "last").expect("rel=last");
    assert_eq!(next, app.github_path("/issues?per_page=3&page=2"));
    assert_eq!(last, app.github_path("/issues?per_page=3&page=5"));

    let page_2 = app.get(&next).await;

    assert_eq!(page_2.status, 200, "{}", page_2.text());
    assert_eq!(page_2.body, app.github.body(ISSUES_PAGE_2_UPSTREAM));
    let link = page_2.header("link").expect("page 2 has a Link header");
    for rel in ["prev", "next", "last", "first"] {
        let url = link_for(link, rel).unwrap_or_else(|| panic!("rel={rel} in {link}"));
        assert!(
            url.starts_with(&app.github_path("/issues?")),
            "rel={rel} is {url}"
        );
    }
    assert_eq!(app.github.requests_for(ISSUES_PAGE_2_UPSTREAM), 1);
}

#[tokio::test]
async fn links_to_other_repositories_stay_absolute() {
    let app = spawn_app().await;
    let rel = "/contributors";
    let upstream = app.upstream(rel);
    app.github.set_resource(
        &upstream,
        200,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("ETag", "\"contributors\""),
            (
                "Link",
                "<https://api.github.com/repos/someone/else/forks?page=2>; rel=\"next\"",
            ),
        ],
        "[]",
    );

    let response = app.get_github(rel).await;

    let link = response.header("link").expect("Link kept");
    let next = link_for(link, "next").unwrap_or_default();
    assert!(
        next.starts_with(&format!("{}/repos/someone/else/", app.github.origin()))
            && next.ends_with("/forks?page=2"),
        "rel=next is {next:?}"
    );
}
