//! `@nick@domain`: a user's network-wide address, parsed and rendered in one place.
//!
//! Typed forms: `@nick@domain`, `nick@domain`, `@nick` and `nick`. Without a domain the
//! address means a user of this instance; [`Address::or_domain`] fills in the local domain
//! where one is known (the shell crate does not know it).
//!
//! Nicks and domains compare in any case (`@Alice@Rose.Example` is `@alice@rose.example`), as
//! the user table looks nicks up; a parsed domain is kept lowercase.

use std::fmt;

/// A user's address: a nick and the instance it lives on.
#[derive(Debug, Clone)]
pub struct Address {
    /// The nick as typed or as registered (case kept for display).
    pub nick: String,
    /// The instance's domain (lowercase when parsed); `None` for "this instance" (typed `@nick`).
    pub domain: Option<String>,
}

/// Why text is not an [`Address`]. Callers word the message for their grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressError {
    /// Nothing before the domain (`@`, `@@rose.example`).
    EmptyNick,
    /// An `@` with nothing after it (`@alice@`).
    EmptyDomain,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressError::EmptyNick => "missing nick, like @alice@rose.example",
            AddressError::EmptyDomain => "missing domain after \"@\", like @alice@rose.example",
        })
    }
}

impl std::error::Error for AddressError {}

impl Address {
    /// The address of `nick` on `domain`, both as given.
    pub fn new(nick: &str, domain: &str) -> Address {
        Address {
            nick: nick.to_owned(),
            domain: Some(domain.to_owned()),
        }
    }

    /// Parses `@nick@domain`, `nick@domain`, `@nick` or `nick`. Everything after the second
    /// `@` is the domain.
    pub fn parse(text: &str) -> Result<Address, AddressError> {
        let bare = text.strip_prefix('@').unwrap_or(text);
        let (nick, domain) = match bare.split_once('@') {
            Some((nick, domain)) => (nick, Some(domain)),
            None => (bare, None),
        };
        if nick.is_empty() {
            return Err(AddressError::EmptyNick);
        }
        if domain.is_some_and(str::is_empty) {
            return Err(AddressError::EmptyDomain);
        }
        Ok(Address {
            nick: nick.to_owned(),
            domain: domain.map(str::to_lowercase),
        })
    }

    /// This address, on `domain` if it names none.
    pub fn or_domain(self, domain: &str) -> Address {
        match self.domain {
            Some(_) => self,
            None => Address::new(&self.nick, domain),
        }
    }

    /// Whether the address is on `domain` (any case); one without a domain is on every one.
    pub fn is_on(&self, domain: &str) -> bool {
        self.domain
            .as_deref()
            .is_none_or(|d| d.eq_ignore_ascii_case(domain))
    }
}

impl PartialEq for Address {
    fn eq(&self, other: &Address) -> bool {
        let same_domain = match (&self.domain, &other.domain) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        };
        same_domain && self.nick.to_lowercase() == other.nick.to_lowercase()
    }
}

impl Eq for Address {}

/// `@nick@domain`, or `@nick` without a domain.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.domain {
            Some(domain) => write!(f, "@{}@{domain}", self.nick),
            None => write!(f, "@{}", self.nick),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `input` and checks its display form, or the error.
    fn check(input: &str, expected: Result<&str, AddressError>) {
        let got = Address::parse(input).map(|a| a.to_string());
        assert_eq!(got.as_deref().map_err(|e| *e), expected, "input: {input:?}");
    }

    #[test]
    fn parses_the_typed_forms() {
        check("@alice@rose.example", Ok("@alice@rose.example"));
        check("alice@rose.example", Ok("@alice@rose.example"));
        check("@alice", Ok("@alice"));
        check("alice", Ok("@alice"));
        check("@Alice@Rose.Example", Ok("@Alice@rose.example"));
        check("@a@b@c", Ok("@a@b@c"));
    }

    #[test]
    fn refuses_a_missing_nick_or_domain() {
        check("", Err(AddressError::EmptyNick));
        check("@", Err(AddressError::EmptyNick));
        check("@@rose.example", Err(AddressError::EmptyNick));
        check("@alice@", Err(AddressError::EmptyDomain));
        check("alice@", Err(AddressError::EmptyDomain));
    }

    /// Checks whether `a` and `b` parse to equal addresses.
    fn check_eq(a: &str, b: &str, equal: bool) {
        let (a_addr, b_addr) = (Address::parse(a).unwrap(), Address::parse(b).unwrap());
        assert_eq!(a_addr == b_addr, equal, "{a:?} == {b:?}");
    }

    #[test]
    fn nicks_and_domains_compare_in_any_case() {
        check_eq("@alice@rose.example", "@ALICE@rose.example", true);
        check_eq("@alice@rose.example", "alice@ROSE.example", true);
        check_eq("@alice", "@Alice", true);
        check_eq("@alice", "@alice@rose.example", false);
        check_eq("@alice@a.example", "@alice@b.example", false);
        check_eq("@alice@rose.example", "@bob@rose.example", false);
        assert_eq!(
            Address::new("Alice", "Rose.Example"),
            Address::parse("@alice@rose.example").unwrap()
        );
    }

    #[test]
    fn or_domain_fills_only_a_missing_domain() {
        let local = |a: &str| {
            Address::parse(a)
                .unwrap()
                .or_domain("Here.Example")
                .to_string()
        };
        assert_eq!(local("@alice"), "@alice@Here.Example");
        assert_eq!(local("@alice@far.example"), "@alice@far.example");
    }

    #[test]
    fn is_on_compares_the_domain_in_any_case() {
        let on = |a: &str, d: &str| Address::parse(a).unwrap().is_on(d);
        assert!(on("@alice", "rose.example"));
        assert!(on("@alice@rose.example", "Rose.Example"));
        assert!(!on("@alice@far.example", "rose.example"));
    }

    #[test]
    fn new_renders_like_the_chat_always_did() {
        assert_eq!(
            Address::new("Bob", "Rose.example").to_string(),
            "@Bob@Rose.example"
        );
    }
}
