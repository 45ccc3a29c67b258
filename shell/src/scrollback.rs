//! The messages a session keeps for paging back, their bounds, and where the view is.
//!
//! Each kept message is one pointer: a chat line or a join notice is built once by the server
//! and shared by every session that shows it ([`Scrollback::push_shared`]), so keeping the
//! last [`SCROLLBACK_MESSAGES`] of them costs a session a few bytes each, whatever their
//! length. What only this session shows (command output, errors, the welcome) is its own
//! copy ([`Scrollback::push_private`]) and is bounded in bytes by [`MAX_PRIVATE_BYTES`]: past
//! it the oldest private messages go first, so a long listing does not push the chat out.
//!
//! Messages are not wrapped here: the screen wraps the few it shows, when it shows them.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::message::{Message, MessageKind};

/// Most messages a session keeps, and so how far back PgUp reaches.
pub const SCROLLBACK_MESSAGES: usize = 1000;

/// Most bytes of messages a session keeps that no other session shares (command output,
/// errors, notices of its own): a page of search results and then some. 500 sessions at
/// this bound hold 8 MiB, which with their shared lines' pointers (16 bytes each) keeps the
/// worst case of 500 full scrollbacks under the 150 MiB goal.
pub const MAX_PRIVATE_BYTES: usize = 16 * 1024;

/// What a private message costs besides its text: the message itself and the reference
/// counts of its allocation.
const PRIVATE_OVERHEAD: usize = std::mem::size_of::<Message>() + 2 * std::mem::size_of::<usize>();

/// Where the bottom row of the message area is while the user has paged back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Anchor {
    /// The message, as an index into the kept messages (0 is the oldest).
    pub index: usize,
    /// One of its wrapped rows (0 is its first).
    pub row: usize,
}

/// One kept message.
struct Entry {
    /// Shared with other sessions, or this session's own.
    message: Arc<Message>,
    /// Bytes it counts against [`MAX_PRIVATE_BYTES`]: 0 when shared.
    private_bytes: u32,
}

/// The kept messages, oldest first, and the scroll position.
#[derive(Default)]
pub struct Scrollback {
    /// At most [`SCROLLBACK_MESSAGES`].
    entries: VecDeque<Entry>,
    /// The sum of the entries' `private_bytes`: at most [`MAX_PRIVATE_BYTES`] plus the newest
    /// message.
    private_bytes: usize,
    /// `None` while the view follows the newest message; kept pointing at the same message
    /// as older ones are dropped.
    anchor: Option<Anchor>,
}

impl Scrollback {
    pub fn new() -> Scrollback {
        Scrollback::default()
    }

    /// Keeps a message only this session shows; it counts against [`MAX_PRIVATE_BYTES`].
    pub fn push_private(&mut self, message: Message) {
        let bytes = private_cost(&message);
        self.push(Arc::new(message), bytes);
    }

    /// Keeps a message the server built once for every session (a chat line, a join): it
    /// costs this session a pointer. Give only messages that are shared, or their memory is
    /// not bounded per session beyond [`SCROLLBACK_MESSAGES`].
    pub fn push_shared(&mut self, message: Arc<Message>) {
        self.push(message, 0);
    }

    fn push(&mut self, message: Arc<Message>, private_bytes: usize) {
        let private_bytes = u32::try_from(private_bytes).unwrap_or(u32::MAX);
        self.private_bytes += private_bytes as usize;
        self.entries.push_back(Entry {
            message,
            private_bytes,
        });
        while self.entries.len() > SCROLLBACK_MESSAGES {
            self.remove(0);
        }
        while self.private_bytes > MAX_PRIVATE_BYTES {
            // The newest message stays even when it alone is over the bound.
            let newest = self.entries.len() - 1;
            match self.entries.iter().position(|e| e.private_bytes > 0) {
                Some(oldest) if oldest < newest => self.remove(oldest),
                _ => break,
            }
        }
    }

    /// Removes the message at `index`, keeping the anchor on the message it was on (or on the
    /// next one, when that message is the one removed).
    fn remove(&mut self, index: usize) {
        if let Some(entry) = self.entries.remove(index) {
            self.private_bytes -= entry.private_bytes as usize;
        }
        if let Some(anchor) = &mut self.anchor {
            if anchor.index > index {
                anchor.index -= 1;
            } else if anchor.index == index {
                anchor.row = 0;
                if anchor.index >= self.entries.len() {
                    self.anchor = None;
                }
            }
        }
    }

    /// How many messages are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The message at `index` (0 is the oldest kept).
    pub fn get(&self, index: usize) -> Option<&Message> {
        self.entries.get(index).map(|e| e.message.as_ref())
    }

    /// Bytes of private messages kept (see [`MAX_PRIVATE_BYTES`]).
    pub fn private_bytes(&self) -> usize {
        self.private_bytes
    }

    /// Where the view's bottom row is; `None` while it follows the newest message.
    pub fn anchor(&self) -> Option<Anchor> {
        self.anchor
    }

    /// Moves the view; `None` follows the newest message again. An anchor past the kept
    /// messages follows the newest too.
    pub fn set_anchor(&mut self, anchor: Option<Anchor>) {
        self.anchor = anchor.filter(|a| a.index < self.entries.len());
    }
}

/// What a message only one session holds costs it: the message and its text.
fn private_cost(message: &Message) -> usize {
    let from = match &message.kind {
        MessageKind::Chat { from } | MessageKind::Action { from } => from.len(),
        MessageKind::Private { peer, .. } => peer.len(),
        MessageKind::Notice | MessageKind::Error | MessageKind::Output => 0,
    };
    PRIVATE_OVERHEAD + message.text.len() + from
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(text: &str) -> Message {
        Message::output(0, text)
    }

    fn texts(scrollback: &Scrollback) -> Vec<String> {
        (0..scrollback.len())
            .filter_map(|i| scrollback.get(i))
            .map(|m| m.text.clone())
            .collect()
    }

    #[test]
    fn at_most_the_last_scrollback_messages_are_kept() {
        let mut scrollback = Scrollback::new();
        for i in 0..SCROLLBACK_MESSAGES + 5 {
            scrollback.push_shared(Arc::new(output(&i.to_string())));
        }
        assert_eq!(scrollback.len(), SCROLLBACK_MESSAGES);
        assert_eq!(scrollback.get(0).map(|m| m.text.as_str()), Some("5"));
        assert_eq!(scrollback.private_bytes(), 0);
    }

    #[test]
    fn private_bytes_are_bounded_and_the_oldest_private_go_first() {
        let mut scrollback = Scrollback::new();
        scrollback.push_shared(Arc::new(output("chat")));
        let big = "x".repeat(1000);
        for _ in 0..200 {
            scrollback.push_private(output(&big));
        }
        assert!(scrollback.private_bytes() <= MAX_PRIVATE_BYTES);
        assert!(scrollback.private_bytes() > MAX_PRIVATE_BYTES - 1100);
        assert_eq!(texts(&scrollback)[0], "chat");
        // A message over the bound by itself is still kept, alone.
        scrollback.push_private(output(&"y".repeat(MAX_PRIVATE_BYTES)));
        assert_eq!(texts(&scrollback).len(), 2);
        assert_eq!(texts(&scrollback)[0], "chat");
    }

    #[test]
    fn the_anchor_stays_on_its_message_as_older_ones_go() {
        let mut scrollback = Scrollback::new();
        for i in 0..SCROLLBACK_MESSAGES {
            scrollback.push_shared(Arc::new(output(&i.to_string())));
        }
        scrollback.set_anchor(Some(Anchor { index: 10, row: 1 }));
        scrollback.push_shared(Arc::new(output("new")));
        assert_eq!(scrollback.anchor(), Some(Anchor { index: 9, row: 1 }));
        assert_eq!(scrollback.get(9).map(|m| m.text.as_str()), Some("10"));
        scrollback.set_anchor(Some(Anchor { index: 0, row: 3 }));
        scrollback.push_shared(Arc::new(output("newer")));
        assert_eq!(scrollback.anchor(), Some(Anchor { index: 0, row: 0 }));
        scrollback.set_anchor(Some(Anchor {
            index: SCROLLBACK_MESSAGES,
            row: 0,
        }));
        assert_eq!(scrollback.anchor(), None);
    }

    #[test]
    fn a_kept_message_costs_a_session_little() {
        assert!(std::mem::size_of::<Entry>() <= 16);
    }
}
