//! The local chat room: who is online, lines said, and their delivery to every open shell.
//!
//! **Boundary:** this module knows nothing of SSH. Sessions subscribe to [`ChatEvent`]s and
//! render them however their client needs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rosewire_shell::{Address, Message};
use tokio::sync::broadcast;

use crate::rate::RateTable;
use crate::store::{self, ChatKind, Store, StoreError, StoredLine};

/// Longest chat line in bytes, after sanitizing (ssh-chat uses the same bound).
pub const MAX_LINE_BYTES: usize = rosewire_shell::command::MAX_LINE_BYTES;
/// Lines a user may send in a burst before the rate limit applies.
pub const RATE_BURST: u32 = 5;
/// After a burst, one more line is allowed per this interval.
pub const RATE_REFILL: Duration = Duration::from_secs(1);
/// Events buffered per subscriber; a session further behind is told how many it missed.
pub const EVENT_BUFFER: usize = 1024;
/// Most lines `/history` shows at once.
pub const MAX_HISTORY: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    pub id: i64,
    pub at: i64,
    /// Who said it: `@nick@domain`.
    pub from: Address,
    pub kind: ChatKind,
    pub text: String,
    /// Said on another instance: shells show the full address, not just the nick.
    pub remote: bool,
}

impl ChatLine {
    fn stored(l: StoredLine, local_domain: &str) -> ChatLine {
        ChatLine {
            id: l.id,
            at: l.at,
            remote: !l.from_domain.eq_ignore_ascii_case(local_domain),
            from: Address::new(&l.from_nick, &l.from_domain),
            kind: l.kind,
            text: l.text,
        }
    }

    /// How the line looks in the message area.
    pub fn message(&self) -> Message {
        match self.kind {
            ChatKind::Say => Message::chat(self.at, &self.speaker(), &self.text),
            ChatKind::Me => Message::action(self.at, &self.speaker(), &self.text),
        }
    }

    /// How the speaker is shown: the nick for a local user, `@nick@domain` for a remote one.
    pub fn speaker(&self) -> String {
        if self.remote {
            self.from.to_string()
        } else {
            self.from.nick.clone()
        }
    }
}

/// What every open shell hears. Each carries `shown`, its message-area form, built once here
/// and shared by every session's scrollback (a pointer per session, not a copy).
#[derive(Debug, Clone)]
pub enum ChatEvent {
    Line {
        line: Arc<ChatLine>,
        shown: Arc<Message>,
    },
    Joined {
        nick: String,
        shown: Arc<Message>,
    },
    Left {
        nick: String,
        shown: Arc<Message>,
    },
    /// For one user's sessions alone: a private message to them (`message_id`, read once a
    /// shell shows it) or news of one they sent.
    Private {
        user_id: i64,
        message_id: Option<i64>,
        shown: Arc<Message>,
    },
    /// A user's ignore list changed (lowercase `@nick@domain` each): their open sessions
    /// take the new one.
    Ignores {
        user_id: i64,
        list: Arc<HashSet<String>>,
    },
}

impl ChatEvent {
    fn line(line: Arc<ChatLine>) -> ChatEvent {
        let shown = Arc::new(line.message());
        ChatEvent::Line { line, shown }
    }

    fn joined(nick: &str) -> ChatEvent {
        ChatEvent::Joined {
            nick: nick.to_owned(),
            shown: Arc::new(Message::notice(unix_now(), &format!("{nick} joined"))),
        }
    }

    fn left(nick: &str) -> ChatEvent {
        ChatEvent::Left {
            nick: nick.to_owned(),
            shown: Arc::new(Message::notice(unix_now(), &format!("{nick} left"))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("nothing to say: the line is empty")]
    Empty,
    #[error("line too long: {len} bytes, the limit is {MAX_LINE_BYTES}")]
    TooLong { len: usize },
    #[error("slow down: at most {RATE_BURST} lines in a row, then one a second; \"{preview}\" was not sent")]
    RateLimited { preview: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One user's online presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Online {
    pub nick: String,
    /// Open interactive shells; the user is listed while this is above zero.
    pub shells: usize,
}

/// Users remembered by the chat rate limit before full buckets are forgotten.
const RATE_TABLE_LIMIT: usize = 65_536;

/// The chat room of this instance. Cheap to clone.
#[derive(Clone)]
pub struct Chat {
    domain: Arc<str>,
    store: Store,
    events: broadcast::Sender<ChatEvent>,
    online: Arc<Mutex<HashMap<String, Online>>>,
    /// Chat lines per user: [`RATE_BURST`] at once, then one every [`RATE_REFILL`].
    limiter: Arc<Mutex<RateTable<String>>>,
}

impl Chat {
    pub fn new(domain: &str, store: Store) -> Chat {
        Chat {
            domain: domain.into(),
            store,
            events: broadcast::channel(EVENT_BUFFER).0,
            online: Arc::default(),
            limiter: Arc::new(Mutex::new(RateTable::new(
                RATE_BURST,
                RATE_REFILL,
                RATE_TABLE_LIMIT,
            ))),
        }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ChatEvent> {
        self.events.subscribe()
    }

    /// Tells `user_id`'s open sessions, and only theirs, something private.
    pub fn tell(&self, user_id: i64, message_id: Option<i64>, shown: Message) {
        let _ = self.events.send(ChatEvent::Private {
            user_id,
            message_id,
            shown: Arc::new(shown),
        });
    }

    /// Gives `user_id`'s open sessions their new ignore list.
    pub fn ignores_changed(&self, user_id: i64, list: HashSet<String>) {
        let _ = self.events.send(ChatEvent::Ignores {
            user_id,
            list: Arc::new(list),
        });
    }

    /// Marks a shell of `nick` open; the first one announces the user.
    pub fn join(&self, nick: &str) {
        let first = {
            let mut online = lock(&self.online);
            let entry = online.entry(nick.to_lowercase()).or_insert_with(|| Online {
                nick: nick.to_owned(),
                shells: 0,
            });
            entry.shells += 1;
            entry.shells == 1
        };
        if first {
            let _ = self.events.send(ChatEvent::joined(nick));
        }
    }

    /// Marks a shell of `nick` closed; the last one announces the departure.
    pub fn leave(&self, nick: &str) {
        let last = {
            let mut online = lock(&self.online);
            let key = nick.to_lowercase();
            match online.get_mut(&key) {
                Some(entry) if entry.shells > 1 => {
                    entry.shells -= 1;
                    false
                }
                Some(_) => {
                    online.remove(&key);
                    true
                }
                None => false,
            }
        };
        if last {
            let _ = self.events.send(ChatEvent::left(nick));
        }
    }

    /// Users with a shell open, sorted by nickname.
    pub fn online(&self) -> Vec<Online> {
        let mut list: Vec<Online> = lock(&self.online).values().cloned().collect();
        list.sort_by_key(|o| o.nick.to_lowercase());
        list
    }

    pub fn online_count(&self) -> usize {
        lock(&self.online).len()
    }

    /// Says a line as `nick`: sanitizes, bounds, rate-limits, stores, and delivers it.
    pub async fn post(
        &self,
        nick: &str,
        kind: ChatKind,
        text: &str,
    ) -> Result<Arc<ChatLine>, ChatError> {
        let from = Address::new(nick, &self.domain);
        self.keep(from, kind, text, unix_now()).await
    }

    /// Takes a line said on another instance (its inbox checked the activity): sanitized and
    /// bounded exactly like a local line, rate-limited per remote user like a local one, then
    /// stored and delivered to every open shell. `at` is when it was said (clamped to now).
    pub async fn receive(
        &self,
        from: Address,
        kind: ChatKind,
        text: &str,
        at: i64,
    ) -> Result<Arc<ChatLine>, ChatError> {
        self.keep(from, kind, text, at.min(unix_now())).await
    }

    /// The one way a line enters the room, local or remote: sanitized, bounded, rate-limited
    /// per speaker (by full address), stored, then delivered to every open shell.
    async fn keep(
        &self,
        from: Address,
        kind: ChatKind,
        text: &str,
        at: i64,
    ) -> Result<Arc<ChatLine>, ChatError> {
        let text = rosewire_shell::sanitize(text).trim().to_owned();
        if text.is_empty() {
            return Err(ChatError::Empty);
        }
        if text.len() > MAX_LINE_BYTES {
            return Err(ChatError::TooLong { len: text.len() });
        }
        let allowed = lock(&self.limiter).allow(from.to_string().to_lowercase(), Instant::now());
        if !allowed {
            return Err(ChatError::RateLimited {
                preview: preview(&text),
            });
        }
        let from_domain = from
            .domain
            .clone()
            .unwrap_or_else(|| self.domain.to_string());
        let (from_nick, stored_domain, stored_text) =
            (from.nick.clone(), from_domain.clone(), text.clone());
        let id = self
            .store
            .call(move |conn| {
                store::chat::insert_line(conn, at, &from_nick, &stored_domain, kind, &stored_text)
            })
            .await?;
        let line = Arc::new(ChatLine {
            id,
            at,
            remote: !from_domain.eq_ignore_ascii_case(&self.domain),
            from: Address::new(&from.nick, &from_domain),
            kind,
            text,
        });
        let _ = self.events.send(ChatEvent::line(line.clone()));
        Ok(line)
    }

    /// The newest `count` lines, oldest first.
    pub async fn history(&self, count: usize) -> Result<Vec<ChatLine>, StoreError> {
        let count = count.min(MAX_HISTORY);
        let lines = self
            .store
            .call(move |conn| store::chat::recent_lines(conn, count))
            .await?;
        Ok(lines
            .into_iter()
            .map(|l| ChatLine::stored(l, &self.domain))
            .collect())
    }
}

/// The first few characters of a line, for messages about it.
fn preview(text: &str) -> String {
    const PREVIEW_CHARS: usize = 20;
    let mut p: String = text.chars().take(PREVIEW_CHARS).collect();
    if p.len() < text.len() {
        p.push('…');
    }
    p
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Locks a mutex, recovering the data if a panicking session poisoned it: the maps guarded
/// here stay consistent after every statement, so a panic elsewhere cannot corrupt them.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_short() {
        assert_eq!(preview("hi"), "hi");
        assert_eq!(preview(&"x".repeat(50)).chars().count(), 21);
    }
}
