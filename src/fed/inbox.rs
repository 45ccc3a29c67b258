//! Receiving: `POST /api/s2s/inbox`. The request's signature is checked by the signature
//! filter before this runs; here the envelope is parsed and bounded, its actor must belong to
//! the signer (403 otherwise), its proof must verify with the actor's instance key, a repeated
//! id is dropped, and the activity is applied once.

use std::time::Instant;

use super::activity::{ActivityError, Envelope, Payload, SharedFile};
use crate::app::App;
use crate::catalog::RemoteFile;
use crate::chat::{lock, unix_now, ChatError};
use crate::store::{fed as db, ChatKind};

/// Activities one peer may deliver in a burst before its rate applies.
pub const INBOX_BURST: u32 = 2_000;
/// After a burst, one more activity per this interval from a peer (1,000 a second).
pub const INBOX_REFILL: std::time::Duration = std::time::Duration::from_millis(1);
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

/// Checks and applies one envelope delivered by `signer` (the domain whose key signed the
/// request).
pub async fn receive(app: &App, signer: &str, body: &[u8]) -> Result<Received, Refusal> {
    let fed = &app.fed;
    if !lock(&fed.inner.inbox_rate).allow(signer.to_owned(), Instant::now()) {
        return Err(Refusal::new(
            429,
            format!("too many activities from {signer}; slow down"),
        ));
    }
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
    let domain = activity.domain().to_owned();
    let actor = activity.actor.clone();
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
                .map_err(|e| Refusal::new(403, e.to_string()))?;
        }
        Payload::Unshare { files } => {
            app.catalog
                .apply_remote_unshare(
                    &domain,
                    actor,
                    files.into_iter().map(|f| (f.id, f.path)).collect(),
                )
                .await
                .map_err(|e| Refusal::new(403, e.to_string()))?;
        }
        Payload::Profile { bio } => {
            // Profiles are fetched live by /whois; the update is recorded for the log only.
            tracing::debug!(%actor, bytes = bio.len(), "a remote profile changed");
        }
    }
    Ok(Received::Applied)
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
