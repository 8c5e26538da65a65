//! `GET /problems/{slug}`: the page each problem `type` URI names, so that
//! every `type` a client receives resolves to an explanation (RFC 9457
//! section 3.1.1), and `GET /problems` listing them all.

use poem::http::StatusCode;
use poem::http::header::CONTENT_TYPE;
use poem::web::Path;
use poem::{Response, handler};

use super::problem::{Problem, ProblemType};

/// The page of one problem type, or a 404 problem for an unknown slug.
#[handler]
pub fn problem_page(Path(slug): Path<String>) -> Response {
    match ProblemType::from_slug(&slug) {
        Some(kind) => html(&page(
            kind.title(),
            &format!(
                "<p><code>{}</code></p>\n<p>{}</p>\n<p><a href=\"/problems\">All problem types</a></p>",
                escape(&kind.uri()),
                inline_code(kind.explanation())
            ),
        )),
        None => Problem::not_found("no problem type of that name").into_response(),
    }
}

/// The index of every problem type.
#[handler]
pub fn problem_index() -> Response {
    let items: String = ProblemType::ALL
        .iter()
        .map(|kind| {
            format!(
                "<li><a href=\"/problems/{slug}\">{slug}</a>: {title}</li>\n",
                slug = kind.slug(),
                title = kind.title()
            )
        })
        .collect();
    html(&page(
        "chimney problem types",
        &format!(
            "<p>Every error chimney answers is <code>application/problem+json</code> with one of these types.</p>\n<ul>\n{items}</ul>"
        ),
    ))
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n{body}\n</body>\n</html>\n",
        title = escape(title)
    )
}

fn html(text: &str) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .body(text.to_owned())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The explanations mark code with backticks; they become `<code>`.
fn inline_code(text: &str) -> String {
    escape(text)
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{part}</code>")
            } else {
                part.to_owned()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_a_distinct_slug_that_finds_it_again() {
        for kind in ProblemType::ALL {
            assert_eq!(ProblemType::from_slug(kind.slug()), Some(kind));
            assert!(!kind.explanation().is_empty());
        }
        let mut slugs: Vec<_> = ProblemType::ALL.iter().map(|k| k.slug()).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), ProblemType::ALL.len());
    }

    #[test]
    fn backticks_become_code_and_markup_is_escaped() {
        assert_eq!(
            inline_code("set `A<b>` now"),
            "set <code>A&lt;b&gt;</code> now"
        );
    }
}
