//! Receiving: `POST /api/s2s/inbox`. The request's signature is checked by the signature
//! filter before this runs; here the envelope is parsed and bounded, its actor must belong to
//! the signer (403 otherwise), its proof must verify with the actor's instance key, a repeated
//! id is dropped, and the activity is applied once.

use std::time::Instant;

use super::activity::{Activity, ActivityError, Envelope, Payload, SharedFile};
use crate::app::App;
use crate::catalog::{RemoteError, RemoteFile};
use crate::chat::{lock, unix_now, ChatError};
use crate::messages::MessageError;
use crate::rate::RateTable;
use crate::store::{fed as db, ChatKind};

// The per-peer rate itself is `federation.inbox_per_second` (a burst of twice as many).
/// Peers remembered by the inbox rate limit.
pub const INBOX_RATE_TABLE: usize = 4_096;

/// Why the inbox refused an activity: an HTTP status and a short reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
        }
    }
}

/// What became of an accepted activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Applied,
    /// Its id was applied before: dropped.
    Duplicate,
}

/// The inbox's rate per peer: spends one of `signer`'s tokens in `table` at `now`, or the
/// 429 refusal when its burst is spent and no token has come back yet.
pub fn check_rate(
    table: &mut RateTable<String>,
    signer: &str,
    now: Instant,
) -> Result<(), Refusal> {
    if table.allow(signer.to_owned(), now) {
        Ok(())
    } else {
        Err(Refusal::new(
            429,
            format!("too many activities from {signer}; slow down"),
        ))
    }
}

/// Checks and applies one envelope delivered by `signer` (the domain whose key signed the
/// request).
pub async fn receive(app: &App, signer: &str, body: &[u8]) -> Result<Received, Refusal> {
    let fed = &app.fed;
    check_rate(&mut lock(&fed.inner.inbox_rate), signer, Instant::now())?;
    let envelope = Envelope::parse(body).map_err(|e| Refusal::new(400, e.to_string()))?;
    // The actor's instance must be the signer: nobody speaks for another instance's users.
    let actor_domain = envelope
        .activity
        .get("actor")
        .and_then(|a| a.as_str())
        .and_then(|a| rosewire_shell::Address::parse(a).ok())
        .and_then(|a| a.domain)
        .ok_or_else(|| Refusal::new(400, "activity without an actor @nick@domain"))?;
    if !actor_domain.eq_ignore_ascii_case(signer) {
        return Err(Refusal::new(
            403,
            format!("actor's instance {actor_domain} is not the signer {signer}"),
        ));
    }
    let key = fed
        .inner
        .verifier
        .key_of(signer)
        .await
        .ok_or_else(|| Refusal::new(401, format!("no key known for {signer}")))?;
    let activity = envelope
        .open(fed.inner.scheme, |m, s| key.verify(m, s))
        .map_err(|e| match e {
            ActivityError::BadProof | ActivityError::ForeignKey { .. } => {
                Refusal::new(403, e.to_string())
            }
            ActivityError::ForeignId { .. } => Refusal::new(403, e.to_string()),
            other => Refusal::new(400, other.to_string()),
        })?;
    let id = activity.id.clone();
    let first = app
        .store
        .call(move |conn| db::first_sight(conn, &id, unix_now()))
        .await
        .map_err(|e| Refusal::new(503, e.to_string()))?;
    if !first {
        return Ok(Received::Duplicate);
    }
    let id = activity.id.clone();
    let applied = apply_payload(app, signer, activity).await;
    if applied.as_ref().is_err_and(|r| r.status >= 500) {
        // Not applied, and the sender will retry: it must not be taken for a repeat then.
        if let Err(e) = app.store.call(move |conn| db::unsee(conn, &id)).await {
            tracing::warn!("cannot forget the id of an activity not applied: {e}");
        }
    }
    applied.map(|()| Received::Applied)
}

/// Applies a new activity's payload; a refusal of 500 or more may be retried.
async fn apply_payload(app: &App, signer: &str, activity: Activity) -> Result<(), Refusal> {
    let domain = activity.domain().to_owned();
    let actor = activity.actor.clone();
    let id = activity.id.clone();
    match activity.payload {
        Payload::Say { text } => {
            chat(app, signer, actor, ChatKind::Say, &text, activity.published).await?
        }
        Payload::Action { text } => {
            chat(app, signer, actor, ChatKind::Me, &text, activity.published).await?
        }
        Payload::Share { files } => {
            app.catalog
                .apply_remote_share(&domain, actor, files.into_iter().map(remote_file).collect())
                .await
                .map_err(remote_refusal)?;
        }
        Payload::Unshare { files } => {
            app.catalog
                .apply_remote_unshare(
                    &domain,
                    actor,
                    files.into_iter().map(|f| (f.id, f.path)).collect(),
                )
                .await
                .map_err(remote_refusal)?;
        }
        Payload::Profile { bio } => {
            // Profiles are fetched live by /whois; the update is recorded for the log only.
            tracing::debug!(%actor, bytes = bio.len(), "a remote profile changed");
        }
        Payload::Message { to, text, sealed } => {
            // Neither the text nor the parties go to the log: only that one arrived.
            app.messages
                .receive(&id, &actor, &to, &text, sealed, activity.published)
                .await
                .map_err(message_refusal)?;
            tracing::debug!(%signer, "private message received");
        }
    }
    Ok(())
}

/// A message refused as the inbox answers it: the sender's instance settles its copy as
/// failed with this reason (a 4xx), retries later (429), or retries after our failure (503).
fn message_refusal(e: MessageError) -> Refusal {
    let status = match &e {
        MessageError::Store(_) => 503,
        MessageError::RateLimited { .. } => 429,
        MessageError::NoSuchUser(_) => 404,
        MessageError::TooLong { .. } => 413,
        MessageError::NotHere(_) => 403,
        MessageError::Empty | MessageError::NotArmor(_) => 400,
        MessageError::Yourself | MessageError::Unreachable(_) => 400,
    };
    Refusal::new(status, e.to_string())
}

/// A catalog refusal as the inbox answers it: the database failing is ours (503, retried),
/// anything else is the sender's (403, not retried).
fn remote_refusal(e: RemoteError) -> Refusal {
    match e {
        RemoteError::Store(e) => Refusal::new(503, e.to_string()),
        e => Refusal::new(403, e.to_string()),
    }
}

/// Shows a remote chat line; one the local rules refuse is dropped, not retried.
async fn chat(
    app: &App,
    signer: &str,
    from: rosewire_shell::Address,
    kind: ChatKind,
    text: &str,
    at: i64,
) -> Result<(), Refusal> {
    match app.chat.receive(from, kind, text, at).await {
        Ok(_) => Ok(()),
        Err(ChatError::Store(e)) => Err(Refusal::new(503, e.to_string())),
        Err(e) => {
            tracing::info!(%signer, "remote chat line dropped: {e}");
            Ok(())
        }
    }
}

fn remote_file(f: SharedFile) -> RemoteFile {
    RemoteFile {
        id: f.id,
        name: f.name,
        path: f.path,
        size: f.size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FederationConfig;

    /// The default per-peer burst and the time one activity's token takes to come back.
    fn burst() -> u32 {
        FederationConfig::default().inbox_rate().0
    }

    fn refill() -> std::time::Duration {
        FederationConfig::default().inbox_rate().1
    }

    fn table() -> RateTable<String> {
        RateTable::new(burst(), refill(), INBOX_RATE_TABLE)
    }

    #[test]
    fn a_catalog_refusal_is_ours_when_the_database_fails_and_the_senders_otherwise() {
        let ours = remote_refusal(RemoteError::Store(crate::store::StoreError::Closed));
        assert_eq!(ours.status, 503);
        let theirs = remote_refusal(RemoteError::TooMany { got: 1_000_000 });
        assert_eq!(theirs.status, 403);
    }

    #[test]
    fn a_peer_over_its_inbox_burst_gets_429_and_others_do_not() {
        let mut rate = table();
        let t0 = Instant::now();
        for i in 0..burst() {
            assert_eq!(
                check_rate(&mut rate, "b.example", t0),
                Ok(()),
                "activity {i}"
            );
        }
        let refused = check_rate(&mut rate, "b.example", t0).unwrap_err();
        assert_eq!(refused.status, 429);
        assert!(refused.reason.contains("b.example"), "{}", refused.reason);
        // Still refused at the same instant: a refusal spends nothing and earns nothing.
        assert!(check_rate(&mut rate, "b.example", t0).is_err());
        // Another peer has its own bucket.
        assert_eq!(check_rate(&mut rate, "c.example", t0), Ok(()));
        // One token comes back per refill(), and only one.
        let t1 = t0 + refill();
        assert_eq!(check_rate(&mut rate, "b.example", t1), Ok(()));
        assert!(check_rate(&mut rate, "b.example", t1).is_err());
    }

    #[test]
    fn a_peer_sending_steadily_over_the_inbox_rate_is_held_to_it() {
        let mut rate = table();
        let t0 = Instant::now();
        // Twice the rate for a second, after the burst: about half is accepted.
        let per_second =
            (std::time::Duration::from_secs(1).as_nanos() / refill().as_nanos()) as u32;
        let sent = 2 * per_second;
        let step = std::time::Duration::from_secs(1) / sent;
        let accepted = (0..burst() + sent)
            .filter(|i| {
                let at = t0 + step * i.saturating_sub(burst());
                check_rate(&mut rate, "b.example", at).is_ok()
            })
            .count() as u32;
        let over_burst = accepted - burst();
        assert!(
            over_burst.abs_diff(per_second) <= 2,
            "{over_burst} accepted past the burst in a second, the rate is {per_second}"
        );
    }

    #[test]
    fn the_inbox_rate_table_keeps_a_spent_peer_while_new_peers_arrive() {
        let mut rate = table();
        let t0 = Instant::now();
        for _ in 0..burst() {
            check_rate(&mut rate, "b.example", t0).unwrap();
        }
        // More peers than the table holds: the spent bucket is not the one forgotten.
        for i in 0..INBOX_RATE_TABLE {
            let _ = check_rate(&mut rate, &format!("p{i}.example"), t0);
        }
        assert!(check_rate(&mut rate, "b.example", t0).is_err());
        // Once every bucket has refilled, the next peer finds the table emptied of them.
        let full = t0 + refill() * burst();
        check_rate(&mut rate, "d.example", full).unwrap();
        assert_eq!(rate.len(), 1);
    }
}
