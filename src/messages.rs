//! Private messages: one user to another, on this instance or across the network.
//!
//! A message to a user here is stored twice in one transaction (the sender's copy,
//! `delivered`, and the recipient's, `unread`). A message to a remote user becomes a
//! `Message` activity owed to the recipient's home alone ([`Federation::send_private`]); the
//! sender's copy is `queued` until the outbox settles it `delivered` or `failed` (with the
//! peer's reason). An arriving one ([`Messages::receive`]) is checked like a local one, then
//! kept as the recipient's `unread` copy. Either way an online recipient's sessions are told
//! at once ([`Chat::tell`]), in the private style.
//!
//! A sealed message's text is age armor, checked for shape and size and delivered opaque: no
//! instance can read it. Ignoring (`/ignore`) drops a user's messages silently on arrival.
//!
//! **Boundary:** this module knows nothing of SSH or HTTP.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rosewire_shell::{Address, Message};

use crate::app::User;
use crate::chat::{lock, unix_now, Chat};
use crate::config::MessagesConfig;
use crate::fed::activity::Payload;
use crate::fed::Federation;
use crate::rate::RateTable;
use crate::store::messages::{
    self as db, Conversation, IgnoreOutcome, NewMessage, Settled, StoredMessage,
};
use crate::store::{users, Store, StoreError};

/// Senders remembered by the message rate limit.
pub const RATE_TABLE: usize = 65_536;
/// Users one user may ignore.
pub const MAX_IGNORED: i64 = 1_000;
/// Conversations `/msgs` lists at most.
pub const MAX_CONVERSATIONS: usize = 100;
/// Messages `/msgs @user@domain` shows when not told how many.
pub const DEFAULT_SHOWN: usize = 20;
/// Most messages `/msgs @user@domain N` shows.
pub const MAX_SHOWN: usize = 500;

/// The first and last lines of age's ASCII armor.
const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";
/// age wraps its armor's base64 at this many columns.
const ARMOR_COLUMNS: usize = 64;

/// Why a message was not sent or not taken.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("nothing to send: the message is empty")]
    Empty,
    #[error("the message is {len} bytes; the limit is {limit}")]
    TooLong { len: usize, limit: usize },
    #[error("a sealed message must be age armor (age -a): {0}")]
    NotArmor(String),
    #[error("slow down: at most {per_minute} messages a minute; the message to {to} was not sent")]
    RateLimited { per_minute: u32, to: String },
    #[error("no user {0}")]
    NoSuchUser(String),
    #[error("that is you; /msg someone else")]
    Yourself,
    #[error("{0} is not a user of this instance")]
    NotHere(String),
    #[error("{0}")]
    Unreachable(#[from] crate::fed::private::Unreachable),
    #[error("messages are unavailable: {0}")]
    Store(#[from] StoreError),
}

/// A message just sent: the sender's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub id: i64,
    /// The recipient, `@nick@domain`.
    pub to: String,
    /// `delivered` (a user here) or `queued` (on its way to the recipient's home).
    pub state: &'static str,
}

/// The private messages of this instance's users. Cheap to clone.
#[derive(Clone)]
pub struct Messages {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    domain: String,
    /// How a sealed message's recipient is told to read it: `ssh [-p PORT] HOST`.
    ssh_command: String,
    config: MessagesConfig,
    chat: Chat,
    fed: Federation,
    /// Messages per sender (lowercase `@nick@domain`), local or remote.
    rate: Mutex<RateTable<String>>,
}

impl Messages {
    pub fn new(
        config: &crate::config::Config,
        store: Store,
        chat: Chat,
        fed: Federation,
    ) -> Messages {
        let (burst, refill) = config.messages.rate();
        let host = config
            .domain
            .rsplit_once(':')
            .map_or(config.domain.as_str(), |(host, _)| host);
        let ssh_command = match config.ssh.listen.port() {
            22 => format!("ssh {host}"),
            port => format!("ssh -p {port} {host}"),
        };
        let messages = Messages {
            inner: Arc::new(Inner {
                store,
                domain: config.domain.clone(),
                ssh_command,
                config: config.messages.clone(),
                chat,
                fed: fed.clone(),
                rate: Mutex::new(RateTable::new(burst, refill, RATE_TABLE)),
            }),
        };
        // Weak: the federation must not keep the messages (and their store) alive, or the
        // two would hold each other past shutdown.
        let teller = Arc::downgrade(&messages.inner);
        fed.on_settled(Arc::new(move |settled| {
            if let Some(inner) = teller.upgrade() {
                Messages { inner }.settled(settled);
            }
        }));
        messages
    }

    /// Sends `text` from `from` to `to` (a user here without a domain). `sealed`: `text` is
    /// age armor.
    pub async fn send(
        &self,
        from: &User,
        to: &Address,
        text: &str,
        sealed: bool,
    ) -> Result<Sent, MessageError> {
        let text = self.checked_text(text, sealed)?;
        let domain = to
            .domain
            .clone()
            .unwrap_or_else(|| self.inner.domain.clone());
        let to = Address::new(&to.nick, &domain);
        let sender = Address::new(&from.nick, &self.inner.domain);
        if to.to_string().eq_ignore_ascii_case(&sender.to_string()) {
            return Err(MessageError::Yourself);
        }
        self.spend(&sender, &to)?;
        if domain.eq_ignore_ascii_case(&self.inner.domain) {
            self.send_here(from, &sender, &to, text, sealed).await
        } else {
            self.send_away(from, &to, text, sealed).await
        }
    }

    /// A message to a user of this instance: both copies in one transaction.
    async fn send_here(
        &self,
        from: &User,
        sender: &Address,
        to: &Address,
        text: String,
        sealed: bool,
    ) -> Result<Sent, MessageError> {
        let at = unix_now();
        let nick = to.nick.clone();
        let (owner_id, sender_s, max) = (from.id, sender.to_string(), self.max_stored());
        let domain = self.inner.domain.clone();
        let stored_text = text.clone();
        let found = self
            .inner
            .store
            .call(move |conn| {
                let Some((recipient_id, recipient_nick)) = users::user_id_by_nick(conn, &nick)?
                else {
                    return Ok(None);
                };
                let tx = conn.transaction()?;
                let to_s = Address::new(&recipient_nick, &domain).to_string();
                let mine = db::insert(
                    &tx,
                    &NewMessage {
                        owner_id,
                        peer: to_s.clone(),
                        outgoing: true,
                        text: stored_text.clone(),
                        sealed,
                        at,
                        state: "delivered",
                        activity_id: None,
                    },
                    max,
                )?;
                let theirs = if db::is_ignored(&tx, recipient_id, &sender_s)? {
                    None
                } else {
                    Some(db::insert(
                        &tx,
                        &NewMessage {
                            owner_id: recipient_id,
                            peer: sender_s,
                            outgoing: false,
                            text: stored_text,
                            sealed,
                            at,
                            state: "unread",
                            activity_id: None,
                        },
                        max,
                    )?)
                };
                tx.commit()?;
                Ok(Some((mine, to_s, recipient_id, theirs)))
            })
            .await?;
        let Some((mine, to_s, recipient_id, theirs)) = found else {
            return Err(MessageError::NoSuchUser(to.to_string()));
        };
        if let Some(id) = theirs {
            self.tell_recipient(recipient_id, id, &from.nick, &text, sealed, at);
        }
        Ok(Sent {
            id: mine,
            to: to_s,
            state: "delivered",
        })
    }

    /// A message to a user of another instance: owed to that instance alone.
    async fn send_away(
        &self,
        from: &User,
        to: &Address,
        text: String,
        sealed: bool,
    ) -> Result<Sent, MessageError> {
        let domain = to.domain.clone().unwrap_or_default();
        self.inner.fed.reach(&domain).await?;
        if self.inner.fed.user_exists(to).await == Some(false) {
            return Err(MessageError::NoSuchUser(to.to_string()));
        }
        let (owner_id, to_s, max, at) = (from.id, to.to_string(), self.max_stored(), unix_now());
        let payload = Payload::Message {
            to: to.clone(),
            text: text.clone(),
            sealed,
        };
        let peer = to_s.clone();
        let id = self
            .inner
            .fed
            .send_private(&from.nick, payload, &domain, move |conn, activity_id| {
                db::insert(
                    conn,
                    &NewMessage {
                        owner_id,
                        peer,
                        outgoing: true,
                        text,
                        sealed,
                        at,
                        state: "queued",
                        activity_id: Some(activity_id.to_owned()),
                    },
                    max,
                )
            })
            .await?;
        Ok(Sent {
            id,
            to: to_s,
            state: "queued",
        })
    }

    /// Takes a message that arrived from another instance (its inbox checked the activity
    /// and that `from` is a user of the signer): for a user of this instance, within this
    /// instance's limits. A message from someone the recipient ignores is dropped quietly.
    pub async fn receive(
        &self,
        activity_id: &str,
        from: &Address,
        to: &Address,
        text: &str,
        sealed: bool,
        at: i64,
    ) -> Result<(), MessageError> {
        if !to
            .domain
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case(&self.inner.domain))
        {
            return Err(MessageError::NotHere(to.to_string()));
        }
        let text = self.checked_text(text, sealed)?;
        self.spend(from, to)?;
        let (nick, from_s, max) = (to.nick.clone(), from.to_string(), self.max_stored());
        let (activity_id, at) = (activity_id.to_owned(), at.min(unix_now()));
        let stored_text = text.clone();
        let kept = self
            .inner
            .store
            .call(move |conn| {
                let Some((recipient_id, _)) = users::user_id_by_nick(conn, &nick)? else {
                    return Ok(Err(()));
                };
                if db::is_ignored(conn, recipient_id, &from_s)? {
                    return Ok(Ok(None));
                }
                let id = db::insert(
                    conn,
                    &NewMessage {
                        owner_id: recipient_id,
                        peer: from_s,
                        outgoing: false,
                        text: stored_text,
                        sealed,
                        at,
                        state: "unread",
                        activity_id: Some(activity_id),
                    },
                    max,
                )?;
                Ok(Ok(Some((recipient_id, id))))
            })
            .await?;
        match kept {
            Err(()) => Err(MessageError::NoSuchUser(to.to_string())),
            Ok(None) => Ok(()),
            Ok(Some((recipient_id, id))) => {
                self.tell_recipient(recipient_id, id, &from.to_string(), &text, sealed, at);
                Ok(())
            }
        }
    }

    /// The user's conversations, the most recent first.
    pub async fn conversations(&self, user_id: i64) -> Result<Vec<Conversation>, StoreError> {
        self.inner
            .store
            .call(move |conn| db::conversations(conn, user_id, MAX_CONVERSATIONS))
            .await
    }

    /// The last `count` messages between the user and `with`, oldest first; the received
    /// ones among them are read now.
    pub async fn conversation(
        &self,
        user_id: i64,
        with: &Address,
        count: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let with = self.full(with).to_string();
        let count = count.clamp(1, MAX_SHOWN);
        self.inner
            .store
            .call(move |conn| {
                let list = db::conversation(conn, user_id, &with, count)?;
                if let Some(last) = list.last() {
                    db::mark_read(conn, user_id, &with, last.id)?;
                }
                Ok(list)
            })
            .await
    }

    /// One of the user's messages.
    pub async fn get(&self, user_id: i64, id: i64) -> Result<Option<StoredMessage>, StoreError> {
        self.inner
            .store
            .call(move |conn| {
                let found = db::get(conn, user_id, id)?;
                if found.is_some() {
                    db::mark_one_read(conn, user_id, id)?;
                }
                Ok(found)
            })
            .await
    }

    /// How many received messages the user has not read.
    pub async fn unread(&self, user_id: i64) -> Result<i64, StoreError> {
        self.inner
            .store
            .call(move |conn| db::unread_count(conn, user_id))
            .await
    }

    /// Who sent the user's last received message.
    pub async fn last_sender(&self, user_id: i64) -> Result<Option<Address>, StoreError> {
        let found = self
            .inner
            .store
            .call(move |conn| db::last_sender(conn, user_id))
            .await?;
        Ok(found.and_then(|a| Address::parse(&a).ok()))
    }

    /// A message a shell of its recipient has shown: read.
    pub async fn seen(&self, user_id: i64, id: i64) {
        let done = self
            .inner
            .store
            .call(move |conn| db::mark_one_read(conn, user_id, id))
            .await;
        if let Err(e) = done {
            tracing::warn!("cannot mark a message read: {e}");
        }
    }

    /// Ignores `who` for `user_id`: their chat lines and messages no longer reach the user.
    pub async fn ignore(&self, user_id: i64, who: &Address) -> Result<IgnoreOutcome, StoreError> {
        let who = self.full(who).to_string();
        let outcome = self
            .inner
            .store
            .call(move |conn| db::ignore(conn, user_id, &who, unix_now(), MAX_IGNORED))
            .await?;
        if outcome == IgnoreOutcome::Added {
            self.publish_ignores(user_id).await?;
        }
        Ok(outcome)
    }

    /// Stops ignoring `who`; false if `who` was not ignored.
    pub async fn unignore(&self, user_id: i64, who: &Address) -> Result<bool, StoreError> {
        let who = self.full(who).to_string();
        let removed = self
            .inner
            .store
            .call(move |conn| db::unignore(conn, user_id, &who))
            .await?;
        if removed {
            self.publish_ignores(user_id).await?;
        }
        Ok(removed)
    }

    /// Whom the user ignores (lowercase `@nick@domain`), in the order they were added.
    pub async fn ignored(&self, user_id: i64) -> Result<Vec<String>, StoreError> {
        self.inner
            .store
            .call(move |conn| db::ignores(conn, user_id))
            .await
    }

    /// The `ssh ... msgs --raw ID | age -d` line that reads sealed message `id`.
    pub fn read_sealed_hint(&self, id: i64) -> String {
        format!(
            "{} msgs --raw {id} | age -d -i ~/.ssh/id_ed25519",
            self.inner.ssh_command
        )
    }

    async fn publish_ignores(&self, user_id: i64) -> Result<(), StoreError> {
        let list = self.ignored(user_id).await?;
        self.inner
            .chat
            .ignores_changed(user_id, list.into_iter().collect::<HashSet<_>>());
        Ok(())
    }

    /// `who` with this instance's domain if it has none.
    fn full(&self, who: &Address) -> Address {
        Address::new(
            &who.nick,
            who.domain.as_deref().unwrap_or(&self.inner.domain),
        )
    }

    fn max_stored(&self) -> i64 {
        i64::try_from(self.inner.config.max_stored_per_user).unwrap_or(i64::MAX)
    }

    /// Spends one of `sender`'s message tokens, or refuses.
    fn spend(&self, sender: &Address, to: &Address) -> Result<(), MessageError> {
        let key = sender.to_string().to_lowercase();
        if lock(&self.inner.rate).allow(key, Instant::now()) {
            Ok(())
        } else {
            Err(MessageError::RateLimited {
                per_minute: self.inner.config.per_minute,
                to: to.to_string(),
            })
        }
    }

    /// The text as it is kept: a plain message sanitized to one line, a sealed one checked to
    /// be age armor; each within its configured size.
    fn checked_text(&self, text: &str, sealed: bool) -> Result<String, MessageError> {
        let config = &self.inner.config;
        if sealed {
            check_size(text, config.max_sealed_bytes)?;
            armor(text)
        } else {
            check_size(text, config.max_text_bytes)?;
            let one_line = text.lines().map(str::trim).collect::<Vec<_>>().join(" ");
            let clean = rosewire_shell::sanitize(&one_line).trim().to_owned();
            if clean.is_empty() {
                return Err(MessageError::Empty);
            }
            Ok(clean)
        }
    }

    /// Shows a new message to its recipient's open sessions.
    fn tell_recipient(&self, user_id: i64, id: i64, from: &str, text: &str, sealed: bool, at: i64) {
        let shown = if sealed {
            Message::private_from(
                at,
                from,
                &format!(
                    "sealed message {id}; read it with: {}",
                    self.read_sealed_hint(id)
                ),
            )
        } else {
            Message::private_from(at, from, text)
        };
        self.inner.chat.tell(user_id, Some(id), shown);
    }

    /// The outbox settled one of our messages: a failure is news for its sender.
    fn settled(&self, settled: Settled) {
        if let Some(why) = &settled.failure {
            self.inner.chat.tell(
                settled.owner_id,
                None,
                Message::error(
                    unix_now(),
                    &format!("message {} to {} failed: {why}", settled.id, settled.peer),
                ),
            );
        }
    }
}

fn check_size(text: &str, limit: usize) -> Result<(), MessageError> {
    if text.len() > limit {
        return Err(MessageError::TooLong {
            len: text.len(),
            limit,
        });
    }
    Ok(())
}

/// `text` as age armor with `\n` line ends, or why it is not armor: the BEGIN line, lines of
/// base64 at most 64 columns wide, and the END line.
pub fn armor(text: &str) -> Result<String, MessageError> {
    let lines: Vec<&str> = text
        .trim()
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    let bad = |why: &str| Err(MessageError::NotArmor(why.to_owned()));
    match (lines.first(), lines.last()) {
        (Some(&ARMOR_BEGIN), Some(&ARMOR_END)) if lines.len() >= 3 => {}
        (Some(first), _) if *first != ARMOR_BEGIN => {
            return bad(&format!("it does not start with {ARMOR_BEGIN}"))
        }
        _ => return bad(&format!("it does not end with {ARMOR_END}")),
    }
    for line in &lines[1..lines.len() - 1] {
        let base64 = line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if line.is_empty() || line.len() > ARMOR_COLUMNS || !base64 {
            return bad("a line between BEGIN and END is not base64 of at most 64 columns");
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "-----BEGIN AGE ENCRYPTED FILE-----\r\n\
        YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBhYmNkZWZnaGlqa2xtbm9w\r\n\
        cXJzdHV2d3h5ego=\r\n\
        -----END AGE ENCRYPTED FILE-----\r\n";

    #[test]
    fn age_armor_is_kept_with_plain_line_ends_and_anything_else_is_refused() {
        let kept = armor(SAMPLE).unwrap();
        assert!(kept.starts_with(ARMOR_BEGIN) && kept.ends_with("FILE-----\n"));
        assert!(!kept.contains('\r'));
        assert_eq!(armor(&kept).unwrap(), kept, "armor is kept as it is");
        for (bad, why) in [
            ("hello", "does not start"),
            ("-----BEGIN AGE ENCRYPTED FILE-----\nQUJD\n", "does not end"),
            (
                "-----BEGIN AGE ENCRYPTED FILE-----\n-----END AGE ENCRYPTED FILE-----\n",
                "does not end",
            ),
            (
                "-----BEGIN AGE ENCRYPTED FILE-----\nnot base64!\n-----END AGE ENCRYPTED FILE-----",
                "not base64",
            ),
            (
                &format!(
                    "{ARMOR_BEGIN}\n{}\n{ARMOR_END}",
                    "A".repeat(ARMOR_COLUMNS + 1)
                ),
                "not base64",
            ),
        ] {
            let e = armor(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
