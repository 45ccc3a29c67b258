//! The search query grammar, written with nom.
//!
//! ```text
//! query   = term (WS term)*
//! term    = "-" atom            exclude: no result contains it
//!         | "ext:" EXT          extension (several are alternatives)
//!         | "size:" CMP SIZE    CMP is > >= < <=; SIZE like 700, 10K, 10M, 1.5G, 2T (powers of 1024)
//!         | "user:" ["@"] NICK ["@" DOMAIN]
//!         | "instance:" DOMAIN   files on that instance (this one's domain: local files)
//!         | atom                every word and phrase must match
//! atom    = '"' phrase '"' | WORD
//! ```
//!
//! Words match whole words of file names and folder names, without regard to case or
//! accents; a word ending in `*` matches words that start with it (`beat*` finds `Beatles`);
//! a phrase matches its words in order. Every error names the offending token and
//! carries its byte offset.

use std::fmt;

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till, take_while1};
use nom::character::complete::{char, multispace0};
use nom::combinator::opt;
use nom::sequence::delimited;
use nom::{IResult, Parser};

use crate::address::Address;

/// Longest query, in bytes.
pub const MAX_QUERY_BYTES: usize = 512;
/// Most terms (words, phrases, filters) in one query.
pub const MAX_TERMS: usize = 32;

/// A parsed search query. Words and phrases are lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// Each must match a whole word, or the start of one if it ends with `*`.
    pub words: Vec<String>,
    /// Each must match as consecutive words.
    pub phrases: Vec<String>,
    /// No result may match any of these (words or phrases).
    pub excluded: Vec<String>,
    /// Lowercase extensions without the dot; a result has one of them (if any are given).
    pub extensions: Vec<String>,
    /// Smallest size in bytes, inclusive.
    pub min_size: Option<u64>,
    /// Largest size in bytes, inclusive.
    pub max_size: Option<u64>,
    /// Only files of this user.
    /// `user:@nick@domain` (`domain` absent for `user:nick`: this instance).
    pub user: Option<Address>,
    /// `instance:DOMAIN`: only files on this instance (lowercase).
    pub instance: Option<String>,
}

impl Query {
    /// Whether anything must match by name (words or phrases).
    pub fn has_text(&self) -> bool {
        !self.words.is_empty() || !self.phrases.is_empty()
    }
}

/// Why a query did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// Byte offset of the bad token.
    pub offset: usize,
    /// The bad token as typed (empty at the end of input).
    pub token: String,
    pub message: String,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.token.is_empty() {
            write!(f, "{} (at byte {})", self.message, self.offset)
        } else {
            write!(
                f,
                "{:?} at byte {}: {}",
                self.token, self.offset, self.message
            )
        }
    }
}

impl std::error::Error for QueryError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Word(String),
    Phrase(String),
}

fn phrase(input: &str) -> IResult<&str, Atom> {
    delimited(char('"'), take_till(|c| c == '"'), char('"'))
        .map(|p: &str| Atom::Phrase(p.to_lowercase()))
        .parse(input)
}

fn word(input: &str) -> IResult<&str, Atom> {
    take_while1(|c: char| !c.is_whitespace() && c != '"')
        .map(|w: &str| Atom::Word(w.to_lowercase()))
        .parse(input)
}

fn atom(input: &str) -> IResult<&str, Atom> {
    alt((phrase, word)).parse(input)
}

fn filter_value(input: &str) -> IResult<&str, &str> {
    take_while1(|c: char| !c.is_whitespace()).parse(input)
}

/// `>10M` and friends: (inclusive min, inclusive max).
fn size_bound(value: &str) -> Result<(Option<u64>, Option<u64>), String> {
    let (op, number) = if let Some(n) = value.strip_prefix(">=") {
        (">=", n)
    } else if let Some(n) = value.strip_prefix("<=") {
        ("<=", n)
    } else if let Some(n) = value.strip_prefix('>') {
        (">", n)
    } else if let Some(n) = value.strip_prefix('<') {
        ("<", n)
    } else {
        return Err("a size filter needs > >= < or <= before the size, like size:>10M".into());
    };
    let bytes = parse_size(number)?;
    Ok(match op {
        ">=" => (Some(bytes), None),
        ">" => (Some(bytes.saturating_add(1)), None),
        "<=" => (None, Some(bytes)),
        _ => (
            None,
            Some(
                bytes
                    .checked_sub(1)
                    .ok_or("nothing is smaller than 0 bytes")?,
            ),
        ),
    })
}

/// `700`, `10K`, `1.5G`: bytes, with K, M, G, T as powers of 1024 (a trailing B or iB is fine).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let upper = text.to_ascii_uppercase();
    let trimmed = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (number, unit) = match trimmed
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphabetic())
    {
        Some((i, _)) => trimmed.split_at(i),
        None => (trimmed, ""),
    };
    let multiplier: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => {
            return Err(format!(
                "{text:?} is not a size; use a number with K, M, G or T, like 10M"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| {
            format!("{text:?} is not a size; use a number with K, M, G or T, like 10M")
        })?;
    let bytes = value * multiplier as f64;
    if bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes as u64)
}

/// `instance:rose.example` (a port, as in `127.0.0.2:8080`, is part of a domain).
fn instance_filter(value: &str) -> Result<String, String> {
    let domain = value.to_lowercase();
    let valid = domain
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '[' | ']'))
        && domain.chars().next().is_some_and(char::is_alphanumeric);
    if valid {
        Ok(domain)
    } else {
        Err("an instance filter is a domain, like instance:rose.example".into())
    }
}

fn user_filter(value: &str) -> Result<Address, String> {
    Address::parse(value).map_err(|_| "a user filter looks like user:@nick@domain".into())
}

/// Parses a search query.
pub fn parse_query(input: &str) -> Result<Query, QueryError> {
    let error = |rest: &str, token: &str, message: String| QueryError {
        offset: input.len() - rest.len(),
        token: token.to_owned(),
        message,
    };
    if input.len() > MAX_QUERY_BYTES {
        return Err(error(
            input,
            "",
            format!(
                "the query is {} bytes; the limit is {MAX_QUERY_BYTES}",
                input.len()
            ),
        ));
    }
    let mut query = Query::default();
    let mut terms = 0;
    let mut rest = input;
    loop {
        let (r, _) = multispace0::<&str, nom::error::Error<&str>>
            .parse(rest)
            .unwrap_or((rest, ""));
        rest = r;
        if rest.is_empty() {
            break;
        }
        terms += 1;
        if terms > MAX_TERMS {
            return Err(error(
                rest,
                "",
                format!("more than {MAX_TERMS} terms in one query"),
            ));
        }
        let start = rest;
        let token_end = |r: &str| &start[..start.len() - r.len()];
        // Filters first: `ext:`, `size:`, `user:`, `instance:`.
        let filter: IResult<&str, (&str, &str)> = (
            alt((tag("ext:"), tag("size:"), tag("user:"), tag("instance:"))),
            filter_value,
        )
            .parse(rest);
        if let Ok((r, (name, value))) = filter {
            let token = token_end(r);
            match name {
                "ext:" => {
                    let ext = value.trim_start_matches('.').to_lowercase();
                    if ext.is_empty() || !ext.chars().all(|c| c.is_alphanumeric()) {
                        return Err(error(
                            start,
                            token,
                            "an extension is letters and digits, like ext:flac".into(),
                        ));
                    }
                    query.extensions.push(ext);
                }
                "size:" => {
                    let (min, max) = size_bound(value).map_err(|m| error(start, token, m))?;
                    if let Some(min) = min {
                        query.min_size = Some(query.min_size.map_or(min, |m| m.max(min)));
                    }
                    if let Some(max) = max {
                        query.max_size = Some(query.max_size.map_or(max, |m| m.min(max)));
                    }
                }
                "instance:" => {
                    if query.instance.is_some() {
                        return Err(error(
                            start,
                            token,
                            "only one instance: filter per query".into(),
                        ));
                    }
                    query.instance =
                        Some(instance_filter(value).map_err(|m| error(start, token, m))?);
                }
                _ => {
                    if query.user.is_some() {
                        return Err(error(
                            start,
                            token,
                            "only one user: filter per query".into(),
                        ));
                    }
                    query.user = Some(user_filter(value).map_err(|m| error(start, token, m))?);
                }
            }
            rest = r;
            continue;
        }
        if let Some(name) = ["ext:", "size:", "user:", "instance:"]
            .iter()
            .find(|t| rest.starts_with(**t))
        {
            return Err(error(
                start,
                name,
                format!(
                    "{name} needs a value, like {}",
                    match *name {
                        "ext:" => "ext:flac",
                        "size:" => "size:>10M",
                        "instance:" => "instance:rose.example",
                        _ => "user:@alice@rose.example",
                    }
                ),
            ));
        }
        let (r, negated) = opt(char::<&str, nom::error::Error<&str>>('-'))
            .parse(rest)
            .unwrap_or((rest, None));
        if r.starts_with('"') && !r[1..].contains('"') {
            return Err(error(r, r, "this quote is never closed".into()));
        }
        let Ok((r, atom)) = atom(r) else {
            return Err(error(
                start,
                token_end(r),
                "expected a word, a \"phrase\" or a filter".into(),
            ));
        };
        let text = match &atom {
            Atom::Word(w) | Atom::Phrase(w) => w.trim().to_owned(),
        };
        if text.is_empty() {
            return Err(error(start, token_end(r), "empty word or phrase".into()));
        }
        match (negated.is_some(), atom) {
            (true, _) => query.excluded.push(text),
            (false, Atom::Word(_)) => query.words.push(text),
            (false, Atom::Phrase(_)) => query.phrases.push(text),
        }
        rest = r;
    }
    if !query.has_text()
        && query.extensions.is_empty()
        && query.user.is_none()
        && query.instance.is_none()
        && query.min_size.is_none()
        && query.max_size.is_none()
    {
        return Err(error(
            rest,
            "",
            "the query is empty; give a word, a \"phrase\" or a filter such as ext:flac".into(),
        ));
    }
    if let (Some(min), Some(max)) = (query.min_size, query.max_size) {
        if min > max {
            return Err(error(
                input,
                input,
                "the size bounds exclude every file".into(),
            ));
        }
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1 << 20;

    /// One row of the table: input, and what the query must be.
    fn check(input: &str, expected: Query) {
        assert_eq!(parse_query(input), Ok(expected), "{input:?}");
    }

    fn check_err(input: &str, offset: usize, token: &str) {
        let err = parse_query(input).expect_err(input);
        assert_eq!(
            (err.offset, err.token.as_str()),
            (offset, token),
            "{input:?}: {err}"
        );
    }

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_query_grammar_table() {
        check(
            "Miles davis",
            Query {
                words: words(&["miles", "davis"]),
                ..Query::default()
            },
        );
        check(
            "\"kind of blue\"",
            Query {
                phrases: words(&["kind of blue"]),
                ..Query::default()
            },
        );
        check(
            "jazz -live",
            Query {
                words: words(&["jazz"]),
                excluded: words(&["live"]),
                ..Query::default()
            },
        );
        check(
            "jazz -\"live at\"",
            Query {
                words: words(&["jazz"]),
                excluded: words(&["live at"]),
                ..Query::default()
            },
        );
        check(
            "ext:flac ext:.MP3",
            Query {
                extensions: words(&["flac", "mp3"]),
                ..Query::default()
            },
        );
        check(
            "x size:>10M",
            Query {
                words: words(&["x"]),
                min_size: Some(10 * M + 1),
                ..Query::default()
            },
        );
        check(
            "x size:>=10M",
            Query {
                words: words(&["x"]),
                min_size: Some(10 * M),
                ..Query::default()
            },
        );
        check(
            "x size:<1G",
            Query {
                words: words(&["x"]),
                max_size: Some((1 << 30) - 1),
                ..Query::default()
            },
        );
        check(
            "x size:<=1.5k",
            Query {
                words: words(&["x"]),
                max_size: Some(1536),
                ..Query::default()
            },
        );
        check(
            "x size:>1M size:<2MiB",
            Query {
                words: words(&["x"]),
                min_size: Some(M + 1),
                max_size: Some(2 * M - 1),
                ..Query::default()
            },
        );
        check(
            "user:@alice@rose.example",
            Query {
                user: Some(Address {
                    nick: "alice".into(),
                    domain: Some("rose.example".into()),
                }),
                ..Query::default()
            },
        );
        check(
            "user:bob",
            Query {
                user: Some(Address {
                    nick: "bob".into(),
                    domain: None,
                }),
                ..Query::default()
            },
        );
        check(
            "jazz instance:Rose.Example",
            Query {
                words: words(&["jazz"]),
                instance: Some("rose.example".into()),
                ..Query::default()
            },
        );
        check(
            "instance:127.0.0.2:8080",
            Query {
                instance: Some("127.0.0.2:8080".into()),
                ..Query::default()
            },
        );
        check(
            "  spaced   out  ",
            Query {
                words: words(&["spaced", "out"]),
                ..Query::default()
            },
        );
        check(
            "日本語 e\u{301}",
            Query {
                words: words(&["日本語", "e\u{301}"]),
                ..Query::default()
            },
        );
    }

    #[test]
    fn errors_point_at_the_bad_token() {
        check_err("", 0, "");
        check_err("   ", 3, "");
        check_err("a size:>abc", 2, "size:>abc");
        check_err("a size:10M", 2, "size:10M");
        check_err("a ext:", 2, "ext:");
        check_err("a \"open", 2, "\"open");
        check_err("a user:@", 2, "user:@");
        check_err("a user:x user:y", 9, "user:y");
        check_err("x size:<0", 2, "size:<0");
        check_err("a -\"\"", 2, "-\"\"");
        check_err("a instance:", 2, "instance:");
        check_err("a instance:-x", 2, "instance:-x");
        check_err("a instance:x/y", 2, "instance:x/y");
        check_err("instance:a instance:b", 11, "instance:b");
    }

    #[test]
    fn error_messages_name_the_token() {
        let err = parse_query("flac size:>lots").unwrap_err().to_string();
        assert!(
            err.contains("\"size:>lots\"") && err.contains("byte 5"),
            "{err}"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("700"), Ok(700));
        assert_eq!(parse_size("10K"), Ok(10240));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1e30T").is_err());
    }
}
