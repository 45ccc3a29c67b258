//! A line in the message area: chat, action, private message, notice, error or command
//! output.
//!
//! [`Message::plain`] is the line-mode form used by exec commands and logs: no escape codes,
//! sanitized. The screen draws the same parts with colours ([`Message::parts`]).

use crate::sanitize::sanitize;

/// How many colours nicknames are spread over (see [`nick_colour`]).
pub const NICK_PALETTE: u8 = 8;

/// Seconds in a day, for the `HH:MM` timestamp.
const SECONDS_PER_DAY: i64 = 24 * 60 * 60;

/// One line in the message area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// When it happened: unix seconds, UTC. Shown as `HH:MM` (UTC).
    pub at: i64,
    /// What kind of line it is, and who said it.
    pub kind: MessageKind,
    /// The text, untrusted: sanitized whenever it is shown.
    pub text: String,
}

/// The kinds of [`Message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    /// `<alice> text`; `from` is a nick or `@nick@domain`.
    Chat { from: String },
    /// `* alice waves`
    Action { from: String },
    /// A private message: `[msg] <bob> text` received from `peer`, `[msg to bob] text` sent
    /// to `peer` (`outgoing`). Drawn in its own colour, never taken for a chat line.
    Private { peer: String, outgoing: bool },
    /// `-- bob joined` (join/leave, server notices)
    Notice,
    /// `error: ...` (command failures)
    Error,
    /// Command output, printed as is (one line, no timestamp).
    Output,
}

/// The role of one piece of a rendered message, which decides its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The `[HH:MM] ` timestamp (dim).
    Time,
    /// A nickname with its palette colour (see [`nick_colour`]).
    Nick(u8),
    /// Punctuation and markers around the nick: `<`, `> `, `* `, `-- ` (default colour).
    Marker,
    /// The message text of chat, actions and output (default colour).
    Text,
    /// The text of a notice (dim).
    Notice,
    /// The text of an error (red).
    Error,
    /// The `[msg]` marker of a private message (its own colour).
    Private,
}

impl Message {
    /// A chat line from `from`.
    pub fn chat(at: i64, from: &str, text: &str) -> Self {
        Self::new(
            at,
            MessageKind::Chat {
                from: from.to_owned(),
            },
            text,
        )
    }

    /// An action (`/me`) by `from`.
    pub fn action(at: i64, from: &str, text: &str) -> Self {
        Self::new(
            at,
            MessageKind::Action {
                from: from.to_owned(),
            },
            text,
        )
    }

    /// A private message received from `peer`.
    pub fn private_from(at: i64, peer: &str, text: &str) -> Self {
        Self::new(
            at,
            MessageKind::Private {
                peer: peer.to_owned(),
                outgoing: false,
            },
            text,
        )
    }

    /// A private message sent to `peer`.
    pub fn private_to(at: i64, peer: &str, text: &str) -> Self {
        Self::new(
            at,
            MessageKind::Private {
                peer: peer.to_owned(),
                outgoing: true,
            },
            text,
        )
    }

    /// A notice: joins, leaves, server news.
    pub fn notice(at: i64, text: &str) -> Self {
        Self::new(at, MessageKind::Notice, text)
    }

    /// An error, e.g. a command that failed.
    pub fn error(at: i64, text: &str) -> Self {
        Self::new(at, MessageKind::Error, text)
    }

    /// One line of command output.
    pub fn output(at: i64, text: &str) -> Self {
        Self::new(at, MessageKind::Output, text)
    }

    fn new(at: i64, kind: MessageKind, text: &str) -> Self {
        Message {
            at,
            kind,
            text: text.to_owned(),
        }
    }

    /// Plain text for line mode: "[HH:MM] <alice> hello" (no escape codes, sanitized).
    pub fn plain(&self) -> String {
        self.parts().into_iter().map(|(_, text)| text).collect()
    }

    /// The message as sanitized pieces, each with its role, in display order.
    pub fn parts(&self) -> Vec<(Part, String)> {
        let time = (Part::Time, format!("[{}] ", clock(self.at)));
        let text = sanitize(&self.text);
        match &self.kind {
            MessageKind::Chat { from } => vec![
                time,
                (Part::Marker, "<".to_owned()),
                (Part::Nick(nick_colour(from)), sanitize(from)),
                (Part::Marker, "> ".to_owned()),
                (Part::Text, text),
            ],
            MessageKind::Action { from } => vec![
                time,
                (Part::Marker, "* ".to_owned()),
                (Part::Nick(nick_colour(from)), sanitize(from)),
                (Part::Text, format!(" {text}")),
            ],
            MessageKind::Private {
                peer,
                outgoing: false,
            } => vec![
                time,
                (Part::Private, "[msg] ".to_owned()),
                (Part::Marker, "<".to_owned()),
                (Part::Nick(nick_colour(peer)), sanitize(peer)),
                (Part::Marker, "> ".to_owned()),
                (Part::Text, text),
            ],
            MessageKind::Private {
                peer,
                outgoing: true,
            } => vec![
                time,
                (Part::Private, "[msg to ".to_owned()),
                (Part::Nick(nick_colour(peer)), sanitize(peer)),
                (Part::Private, "] ".to_owned()),
                (Part::Text, text),
            ],
            MessageKind::Notice => vec![time, (Part::Notice, format!("-- {text}"))],
            MessageKind::Error => vec![time, (Part::Error, format!("error: {text}"))],
            MessageKind::Output => vec![(Part::Text, text)],
        }
    }
}

/// `HH:MM` (UTC) of a unix time, by arithmetic.
fn clock(at: i64) -> String {
    let seconds = at.rem_euclid(SECONDS_PER_DAY);
    format!("{:02}:{:02}", seconds / 3600, seconds / 60 % 60)
}

/// A stable colour index (0..NICK_PALETTE) for a nickname: FNV-1a of its lowercase form,
/// so `Alice` and `alice` look the same and a nick keeps its colour across sessions.
pub fn nick_colour(nick: &str) -> u8 {
    const FNV_OFFSET: u32 = 0x811c_9dc5;
    const FNV_PRIME: u32 = 0x0100_0193;
    let hash = nick.to_lowercase().bytes().fold(FNV_OFFSET, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(FNV_PRIME)
    });
    // The remainder is below NICK_PALETTE, which fits in a u8.
    (hash % u32::from(NICK_PALETTE)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(message: Message, expected: &str) {
        assert_eq!(message.plain(), expected, "{message:?}");
    }

    #[test]
    fn plain_forms() {
        check(Message::chat(0, "alice", "hello"), "[00:00] <alice> hello");
        check(Message::chat(45_296, "alice", "hi"), "[12:34] <alice> hi");
        check(
            Message::chat(86_399, "@bob@b.example", "x"),
            "[23:59] <@bob@b.example> x",
        );
        check(Message::chat(1_700_000_000, "a", "x"), "[22:13] <a> x");
        check(
            Message::chat(-60, "a", "before 1970"),
            "[23:59] <a> before 1970",
        );
        check(
            Message::action(3600, "alice", "waves"),
            "[01:00] * alice waves",
        );
        check(Message::notice(60, "bob joined"), "[00:01] -- bob joined");
        check(
            Message::private_from(60, "@bob@b.example", "psst"),
            "[00:01] [msg] <@bob@b.example> psst",
        );
        check(
            Message::private_to(60, "bob", "hi"),
            "[00:01] [msg to bob] hi",
        );
        check(
            Message::error(0, "no such user"),
            "[00:00] error: no such user",
        );
        check(Message::output(0, "  alice  (idle)"), "  alice  (idle)");
    }

    #[test]
    fn plain_is_sanitized() {
        check(
            Message::chat(0, "ev\x1b[2Jil", "\x1b]0;title\x07hi\x1b[31m!"),
            "[00:00] <evil> hi!",
        );
        check(Message::output(0, "tab\there"), "tab here");
    }

    #[test]
    fn nick_colours_are_stable_and_in_range() {
        assert_eq!(nick_colour("alice"), nick_colour("alice"));
        assert_eq!(nick_colour("Alice"), nick_colour("alice"));
        let colours: std::collections::HashSet<u8> = [
            "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
        ]
        .iter()
        .map(|nick| nick_colour(nick))
        .collect();
        assert!(colours.iter().all(|c| *c < NICK_PALETTE));
        assert!(
            colours.len() > 2,
            "nicks should spread over the palette: {colours:?}"
        );
    }
}
