//! Nickname rules. The SSH user name is the nickname, so these rules decide who may log in
//! under which name.
//!
//! - 1 to [`MAX_NICK_LEN`] characters;
//! - ASCII letters, digits, `_`, `-` and `.`, starting with a letter or a digit;
//! - unique without regard to case (`Alice` and `alice` are the same user; the first spelling
//!   is kept for display);
//! - not one of the [`RESERVED`] names, which would mislead other users;
//! - a new nickname must not look like an existing or reserved one: its [`skeleton`] must
//!   differ from theirs (`a1ice` next to `alice`, `admin.`, `root_`). Names claimed before
//!   this rule keep working.
//!
//! The SSH user name may also be `NICK+CODE` ([`Login::Confirm`]): it confirms a key added
//! with `/keys add` by logging in once with that key.

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
    #[error(
        "confirmation code in {0:?} must be letters and digits, as /keys add printed it \
         (NICK+CODE)"
    )]
    BadCode(String),
}

/// Longest confirmation code accepted in a user name: longer than any code `/keys add`
/// makes, so a longer one is a typo; refused before the store is asked.
const MAX_CODE_LEN: usize = 16;

/// What the SSH user name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login<'a> {
    /// Log in as this nickname (claiming it if it is free).
    Nick(&'a str),
    /// `NICK+CODE`: confirm the key waiting under `code` for `nick`, then log in as `nick`.
    Confirm { nick: &'a str, code: &'a str },
}

/// Splits an SSH user name into a nickname and an optional confirmation code, checking both.
/// `+` cannot occur in a nickname, so it is free as the separator.
pub fn parse_login(user: &str) -> Result<Login<'_>, NickError> {
    let Some((nick, code)) = user.split_once('+') else {
        validate(user)?;
        return Ok(Login::Nick(user));
    };
    validate(nick)?;
    if code.is_empty()
        || code.len() > MAX_CODE_LEN
        || !code.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(NickError::BadCode(user.to_owned()));
    }
    Ok(Login::Confirm { nick, code })
}

pub fn validate(nick: &str) -> Result<(), NickError> {
    validate_syntax(nick)?;
    if RESERVED.contains(&nick.to_ascii_lowercase().as_str()) {
        return Err(NickError::Reserved(nick.to_owned()));
    }
    Ok(())
}

/// The form of a nickname alone, without the names reserved here: what a user of another
/// instance may be called (`@admin@other.example` names that instance's admin, shown with
/// its domain, and misleads no one about ours).
pub fn validate_syntax(nick: &str) -> Result<(), NickError> {
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
    Ok(())
}

/// Separators [`skeleton`] drops: `admin.`, `ro-ot` and `root_` read as the names they
/// decorate.
const SEPARATORS: [char; 3] = ['_', '-', '.'];

/// Look-alikes that TR39's confusables data leaves out but common fonts draw alike, mapped
/// the way TR39 maps `m` to `rn`: to the letter pair.
const EXTRA_CONFUSABLES: &[(char, &str)] = &[('w', "vv"), ('d', "cl")];

/// The confusable skeleton of a nickname: two nicknames that look alike have the same one.
///
/// 1. the separators `_ - .` are dropped;
/// 2. Unicode TR39's skeleton (`unicode-security`) of the spelling as displayed; for ASCII
///    it maps `0` to `O`, `1` and `I` to `l`, `m` to `rn` (and `|` to `l`);
/// 3. lowercase, since nicknames are the same without regard to case;
/// 4. [`EXTRA_CONFUSABLES`]: `w` to `vv`, `d` to `cl`.
///
/// So `a1ice`, `aIice` and `alice.` all give `alice`. The skeletons of existing users are
/// stored (`users.nick_skeleton`): changing this mapping needs a migration that recomputes
/// them.
pub fn skeleton(nick: &str) -> String {
    let bare: String = nick.chars().filter(|c| !SEPARATORS.contains(c)).collect();
    let tr39: String = unicode_security::skeleton(&bare).collect();
    let mut out = String::with_capacity(tr39.len());
    for c in tr39.to_lowercase().chars() {
        match EXTRA_CONFUSABLES.iter().find(|(from, _)| *from == c) {
            Some((_, to)) => out.push_str(to),
            None => out.push(c),
        }
    }
    out
}

/// Whether a skeleton is that of a [`RESERVED`] name (`admin.`, `r00t`, `Root_`).
pub fn looks_reserved(skeleton_of_nick: &str) -> bool {
    RESERVED.iter().any(|r| skeleton(r) == skeleton_of_nick)
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
    fn look_alike_nicknames_share_a_skeleton() {
        let check = |a: &str, b: &str, same: bool| {
            assert_eq!(
                skeleton(a) == skeleton(b),
                same,
                "{a:?} -> {:?}, {b:?} -> {:?}",
                skeleton(a),
                skeleton(b)
            )
        };
        check("alice", "a1ice", true);
        check("alice", "aIice", true);
        check("alice", "Alice", true);
        // Skeletons follow the spelling as displayed: a capital I looks like l, not i.
        // (`ALICE` and `alice` are one nickname anyway: nicknames ignore case.)
        check("ALICE", "AL1CE", true);
        check("Ilona", "llona", true);
        check("alice", "ALICE", false);
        check("alice", "alice.", true);
        check("alice", "a_l-i.ce", true);
        check("bob", "b0b", true);
        check("bob", "B0B", true);
        check("mallory", "rnallory", true);
        check("willow", "vvillow", true);
        check("dan", "clan", true);
        check("dan", "cIan", true);
        check("alice", "alicia", false);
        check("alice", "bob", false);
        check("bob", "bobby", false);
        check("carol", "caro1", true);
        check("carol", "karol", false);
        check("eve", "eva", false);
    }

    #[test]
    fn reserved_names_are_recognised_behind_decoration() {
        let check = |nick: &str, reserved: bool| {
            assert_eq!(looks_reserved(&skeleton(nick)), reserved, "{nick:?}")
        };
        check("admin.", true);
        check("root_", true);
        check("ro-ot", true);
        check("r00t", true);
        check("Adrnin", true);
        check("5upport", false);
        check("rooted", false);
        check("alice", false);
    }

    #[test]
    fn a_user_name_may_carry_a_confirmation_code() {
        assert_eq!(parse_login("alice"), Ok(Login::Nick("alice")));
        assert_eq!(
            parse_login("alice+K7Q2MX9P"),
            Ok(Login::Confirm {
                nick: "alice",
                code: "K7Q2MX9P"
            })
        );
        assert!(matches!(parse_login("alice+"), Err(NickError::BadCode(_))));
        assert!(matches!(
            parse_login("alice+a+b"),
            Err(NickError::BadCode(_))
        ));
        assert!(matches!(
            parse_login(&format!("alice+{}", "A".repeat(MAX_CODE_LEN + 1))),
            Err(NickError::BadCode(_))
        ));
        assert!(matches!(
            parse_login("root+ABC"),
            Err(NickError::Reserved(_))
        ));
        assert!(matches!(parse_login("+ABC"), Err(NickError::Empty)));
    }

    #[test]
    fn errors_name_the_bad_value() {
        let err = validate("bad!nick").unwrap_err().to_string();
        assert!(err.contains("\"bad!nick\"") && err.contains("'!'"), "{err}");
    }
}
