//! `If-None-Match` as RFC 9110 §13.1.2 defines it: `*` or a list of entity
//! tags, compared weakly (a `W/` prefix on either side is ignored).

/// A parsed `If-None-Match` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfNoneMatch {
    /// `*`: matches any current representation.
    Any,
    /// The opaque tags listed, each with its quotes and without `W/`.
    Tags(Vec<String>),
}

impl IfNoneMatch {
    /// Parses one or more header values (repeated headers are one list).
    /// Returns `None` when no usable tag is present.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut tags = Vec::new();
        for value in values {
            let mut rest = value.trim();
            while !rest.is_empty() {
                rest = rest.trim_start_matches([',', ' ', '\t']);
                if rest.is_empty() {
                    break;
                }
                if let Some(after) = rest.strip_prefix('*')
                    && (after.trim_start().is_empty() || after.trim_start().starts_with(','))
                {
                    return Some(Self::Any);
                }
                let (tag, after) = split_entity_tag(rest)?;
                tags.push(tag.to_owned());
                rest = after;
            }
        }
        (!tags.is_empty()).then_some(Self::Tags(tags))
    }

    /// Weak comparison against the stored ETag of a representation.
    pub fn matches(&self, etag: &str) -> bool {
        let current = opaque(etag.trim());
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|t| t == current),
        }
    }
}

/// Splits the first entity tag off `s`, returning its opaque part (with
/// quotes) and the remainder. Tolerates unquoted tags as some clients send.
fn split_entity_tag(s: &str) -> Option<(&str, &str)> {
    let s = s.strip_prefix("W/").unwrap_or(s);
    if let Some(body) = s.strip_prefix('"') {
        let end = body.find('"')? + 2;
        Some((&s[..end], &s[end..]))
    } else {
        let end = s.find([',', ' ', '\t']).unwrap_or(s.len());
        (end > 0).then(|| (&s[..end], &s[end..]))
    }
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> IfNoneMatch {
        IfNoneMatch::parse([v]).expect("parses")
    }

    #[test]
    fn a_single_strong_tag_matches_itself() {
        assert!(parse("\"abc\"").matches("\"abc\""));
        assert!(!parse("\"abc\"").matches("\"abd\""));
    }

    #[test]
    fn comparison_is_weak_on_both_sides() {
        assert!(parse("W/\"abc\"").matches("\"abc\""));
        assert!(parse("\"abc\"").matches("W/\"abc\""));
        assert!(parse("W/\"abc\"").matches("W/\"abc\""));
    }

    #[test]
    fn any_tag_in_a_list_matches() {
        let inm = parse("\"x\", W/\"y\",\"z\"");
        assert!(inm.matches("\"y\""));
        assert!(inm.matches("\"z\""));
        assert!(!inm.matches("\"w\""));
    }

    #[test]
    fn repeated_headers_form_one_list() {
        let inm = IfNoneMatch::parse(["\"a\"", "\"b\""]).unwrap();
        assert!(inm.matches("\"b\""));
    }

    #[test]
    fn star_matches_any_representation() {
        assert_eq!(parse("*"), IfNoneMatch::Any);
        assert!(parse(" * ").matches("\"anything\""));
    }

    #[test]
    fn commas_inside_quotes_belong_to_the_tag() {
        let inm = parse("\"a,b\", \"c\"");
        assert!(inm.matches("\"a,b\""));
        assert!(!inm.matches("\"a\""));
    }

    #[test]
    fn empty_or_broken_headers_give_nothing() {
        assert_eq!(IfNoneMatch::parse([""]), None);
        assert_eq!(IfNoneMatch::parse([" , "]), None);
        assert_eq!(IfNoneMatch::parse(["\"unterminated"]), None);
    }
}
