//! The operator's say over which instances this one talks to: `[federation] block` and
//! `allow_only`, applied to sending, receiving and gossip alike.
//!
//! A pattern is a domain (`rose.example`, matching exactly that domain) or `*.` and a domain
//! (`*.rose.example`, matching every subdomain of it, not `rose.example` itself). In dev mode
//! a domain may carry a port (`127.0.0.2:8080`); a pattern without a port matches the host on
//! any port. Matching ignores ASCII case.

use crate::config::valid_domain;

/// One `block` or `allow_only` entry, lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `rose.example`: this domain (any port when the pattern has none).
    Exact(String),
    /// `*.rose.example`: any domain ending in `.rose.example`.
    Subdomains(String),
}

impl Pattern {
    fn parse(text: &str) -> Pattern {
        let text = text.trim().to_ascii_lowercase();
        match text.strip_prefix("*.") {
            Some(parent) => Pattern::Subdomains(parent.to_owned()),
            None => Pattern::Exact(text),
        }
    }

    fn matches(&self, domain: &str, host: &str) -> bool {
        match self {
            Pattern::Exact(p) => p == domain || p == host,
            Pattern::Subdomains(parent) => [domain, host].iter().any(|d| {
                d.strip_suffix(parent.as_str())
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
            }),
        }
    }
}

/// Which peer domains this instance may talk to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Never talked to, whatever `allow_only` says.
    block: Vec<Pattern>,
    /// When set, only matching domains are talked to.
    allow_only: Option<Vec<Pattern>>,
}

impl Policy {
    /// A policy from the config's lists (checked by [`check_pattern`] in `Config::validate`).
    pub fn new(block: &[String], allow_only: Option<&[String]>) -> Policy {
        let parse = |list: &[String]| list.iter().map(|p| Pattern::parse(p)).collect();
        Policy {
            block: parse(block),
            allow_only: allow_only.map(parse),
        }
    }

    /// The policy of `[federation]`.
    pub fn from_config(federation: &crate::config::FederationConfig) -> Policy {
        Policy::new(&federation.block, federation.allow_only.as_deref())
    }

    /// Whether this instance may send to, receive from and gossip about `domain`.
    pub fn allows(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let host = domain
            .rsplit_once(':')
            .map_or(domain.as_str(), |(host, _)| host);
        if self.block.iter().any(|p| p.matches(&domain, host)) {
            return false;
        }
        match &self.allow_only {
            Some(allowed) => allowed.iter().any(|p| p.matches(&domain, host)),
            None => true,
        }
    }
}

/// Checks one `block` / `allow_only` entry; `key` names the list in the error.
pub fn check_pattern(key: &str, pattern: &str, dev: bool) -> Result<(), String> {
    let domain = pattern.strip_prefix("*.").unwrap_or(pattern);
    if valid_domain(domain, dev) {
        Ok(())
    } else {
        Err(format!(
            "{key} entry {pattern:?} is not a domain; write \"rose.example\" or \"*.rose.example\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(block: &[&str], allow_only: Option<&[&str]>) -> Policy {
        let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Policy::new(&own(block), allow_only.map(own).as_deref())
    }

    #[test]
    fn an_empty_policy_allows_every_domain() {
        assert!(Policy::default().allows("rose.example"));
    }

    #[test]
    fn a_blocked_domain_is_refused_and_its_neighbours_are_not() {
        let p = policy(&["evil.example"], None);
        assert!(!p.allows("evil.example"));
        assert!(!p.allows("EVIL.example."));
        assert!(p.allows("sub.evil.example"));
        assert!(p.allows("notevil.example"));
        assert!(p.allows("evil.example.org"));
    }

    #[test]
    fn a_wildcard_blocks_subdomains_only() {
        let p = policy(&["*.evil.example"], None);
        assert!(!p.allows("a.evil.example"));
        assert!(!p.allows("a.b.evil.example"));
        assert!(p.allows("evil.example"));
        assert!(p.allows("notevil.example"));
    }

    #[test]
    fn allow_only_refuses_everything_else_and_block_wins_over_it() {
        let p = policy(
            &["bad.friends.example"],
            Some(&["friend.example", "*.friends.example"]),
        );
        assert!(p.allows("friend.example"));
        assert!(p.allows("a.friends.example"));
        assert!(!p.allows("bad.friends.example"));
        assert!(!p.allows("stranger.example"));
    }

    #[test]
    fn a_pattern_without_a_port_matches_every_port() {
        let p = policy(&["127.0.0.3"], None);
        assert!(!p.allows("127.0.0.3:8080"));
        assert!(p.allows("127.0.0.2:8080"));
        let p = policy(&["127.0.0.3:8080"], None);
        assert!(!p.allows("127.0.0.3:8080"));
        assert!(p.allows("127.0.0.3:8081"));
    }

    #[test]
    fn a_pattern_that_is_not_a_domain_is_named_in_the_error() {
        assert!(check_pattern("federation.block", "*.rose.example", false).is_ok());
        for bad in [
            "",
            "*.",
            "ro se.example",
            "https://rose.example",
            "*",
            "a.*.example",
        ] {
            let err = check_pattern("federation.block", bad, false).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        assert!(check_pattern("federation.block", "127.0.0.2:8080", false).is_err());
        assert!(check_pattern("federation.block", "127.0.0.2:8080", true).is_ok());
    }
}
