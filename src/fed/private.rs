//! Private delivery: an activity owed to one peer alone (a private message goes from the
//! sender's home to the recipient's home and nowhere else), and the news of its fate.
//!
//! The message and its outbox entry are written in one transaction, so a message is never
//! `queued` without being owed, nor owed without its sender's copy.

use std::sync::Arc;

use rosewire_shell::Address;
use rusqlite::Connection;

use super::activity::Payload;
use super::Federation;
use crate::chat::unix_now;
use crate::store::messages::Settled;
use crate::store::{fed as db, StoreError};

/// Called when the outbox learns the fate of a private message (delivered or refused).
pub type OnSettled = Arc<dyn Fn(Settled) + Send + Sync>;

/// Why a peer cannot be written to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    #[error("instance {0} is blocked here")]
    Blocked(String),
    #[error("cannot reach instance {0}: it does not answer as a RoseWire instance")]
    NotAPeer(String),
}

impl Federation {
    /// Sets what is told when the outbox settles a private message; once.
    pub fn on_settled(&self, hook: OnSettled) {
        let _ = self.inner.on_settled.set(hook);
    }

    /// Makes `domain` a peer if it is not one: checked like any newcomer (it answers as an
    /// instance, with a key), refused if the operator blocks it.
    pub async fn reach(&self, domain: &str) -> Result<(), Unreachable> {
        let domain = domain.to_ascii_lowercase();
        if !self.inner.policy.allows(&domain) {
            return Err(Unreachable::Blocked(domain));
        }
        if self.learn(&domain).await {
            Ok(())
        } else {
            Err(Unreachable::NotAPeer(domain))
        }
    }

    /// Whether `address` names a user at their home instance: `Some(false)` when the
    /// instance says there is no such user (WebFinger 404), `None` when it cannot tell now.
    pub async fn user_exists(&self, address: &Address) -> Option<bool> {
        let url = super::webfinger::webfinger_url(address, self.inner.scheme)?;
        match self
            .inner
            .client
            .get_json::<super::webfinger::Jrd>(&url)
            .await
        {
            Ok(_) => Some(true),
            Err(super::client::FetchError::Status(404, _)) => Some(false),
            Err(e) => {
                tracing::info!(%address, "cannot tell whether the user exists: {e}");
                None
            }
        }
    }

    /// Sends an activity by local user `nick` to `peer` alone. `keep` runs in the same
    /// transaction, with the new activity's id (it stores the sender's copy); its result is
    /// returned. `peer` must be a peer ([`Federation::reach`]).
    pub async fn send_private<T, K>(
        &self,
        nick: &str,
        payload: Payload,
        peer: &str,
        keep: K,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        K: FnOnce(&Connection, &str) -> Result<T, StoreError> + Send + 'static,
    {
        let (activity, body) = self.seal(nick, payload);
        let id = activity.id.clone();
        let to = peer.to_ascii_lowercase();
        let p = to.clone();
        let kept = self
            .inner
            .store
            .call(move |conn| {
                let tx = conn.transaction()?;
                let kept = keep(&tx, &id)?;
                db::enqueue_to(&tx, &id, &body, unix_now(), &p)?;
                tx.commit()?;
                Ok(kept)
            })
            .await?;
        tracing::debug!(kind = activity.payload.kind(), peer = %to, "sent privately");
        self.start_worker(&to);
        self.wake(&to);
        Ok(kept)
    }

    /// Tells the hook that a private message's fate is known.
    pub(super) fn settled(&self, settled: Settled) {
        if let Some(hook) = self.inner.on_settled.get() {
            hook(settled);
        }
    }
}
