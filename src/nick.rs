//! Nickname rules. The SSH user name is the nickname, so these rules decide who may log in
//! under which name.
//!
//! - 1 to [`MAX_NICK_LEN`] characters;
//! - ASCII letters, digits, `_`, `-` and `.`, starting with a letter or a digit;
//! - unique without regard to case (`Alice` and `alice` are the same user; the first spelling
//!   is kept for display);
//! - not one of the [`RESERVED`] names, which would mislead other users.

/// Longest nickname, in characters (ssh-chat uses 16; addresses stay readable).
pub const MAX_NICK_LEN: usize = 24;

/// Names nobody may claim: they impersonate the server or its staff, or mean "everyone".
pub const RESERVED: &[&str] = &[
    "abuse",
    "admin",
    "administrator",
    "all",
    "anonymous",
    "everyone",
    "here",
    "help",
    "hostmaster",
    "mod",
    "moderator",
    "nobody",
    "operator",
    "postmaster",
    "root",
    "rosewire",
    "security",
    "server",
    "staff",
    "support",
    "sysop",
    "system",
    "webmaster",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NickError {
    #[error("nickname is empty")]
    Empty,
    #[error("nickname {0:?} is longer than {MAX_NICK_LEN} characters")]
    TooLong(String),
    #[error("nickname {0:?} must start with a letter or a digit")]
    BadStart(String),
    #[error("nickname {nick:?} contains {bad:?}; use letters, digits, '_', '-' and '.'")]
    BadChar { nick: String, bad: char },
    #[error("nickname {0:?} is reserved")]
    Reserved(String),
}

pub fn validate(nick: &str) -> Result<(), NickError> {
    let mut chars = nick.chars();
    let first = chars.next().ok_or(NickError::Empty)?;
    if nick.chars().count() > MAX_NICK_LEN {
        return Err(NickError::TooLong(nick.to_owned()));
    }
    if let Some(bad) = nick
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(NickError::BadChar {
            nick: nick.to_owned(),
            bad,
        });
    }
    if !first.is_ascii_alphanumeric() {
        return Err(NickError::BadStart(nick.to_owned()));
    }
    if RESERVED.contains(&nick.to_ascii_lowercase().as_str()) {
        return Err(NickError::Reserved(nick.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nickname_rules() {
        let check = |nick: &str, ok: bool| assert_eq!(validate(nick).is_ok(), ok, "{nick:?}");
        check("alice", true);
        check("Bob_2", true);
        check("a.b-c", true);
        check("x", true);
        check(&"a".repeat(MAX_NICK_LEN), true);
        check(&"a".repeat(MAX_NICK_LEN + 1), false);
        check("", false);
        check("-lead", false);
        check(".dot", false);
        check("sp ace", false);
        check("ünï", false);
        check("a@b", false);
        check("ROOT", false);
        check("Admin", false);
    }

    #[test]
    fn errors_name_the_bad_value() {
        let err = validate("bad!nick").unwrap_err().to_string();
        assert!(err.contains("\"bad!nick\"") && err.contains("'!'"), "{err}");
    }
}
