//! Sending: an activity is sealed, stored in the outbox owed to every peer (one transaction),
//! and a worker per peer posts what that peer is owed, oldest first, one at a time. A failure
//! stops the worker until the peer's schedule ([`super::schedule`]) says to try again; the
//! outbox survives restarts, so a peer that comes back gets what it missed, once, in order.

use std::sync::Arc;

use rosewire_shell::Address;
use tokio::sync::{watch, Notify};

use super::activity::{Activity, Envelope, Payload};
use super::Federation;
use crate::chat::unix_now;
use crate::store::{fed as db, StoreError};

/// Activities read from the outbox per look; posted one at a time, in order.
const BATCH: usize = 32;

impl Federation {
    /// Publishes an activity by local user `nick`: sealed with the instance key, stored owed
    /// to every peer, and the peers' workers woken.
    pub async fn publish(&self, nick: &str, payload: Payload) -> Result<(), StoreError> {
        let (activity, body) = self.seal(nick, payload);
        let id = activity.id.clone();
        let owed = self
            .inner
            .store
            .call(move |conn| db::enqueue(conn, &id, &body, unix_now()))
            .await?;
        tracing::debug!(id = %activity.id, kind = activity.payload.kind(), peers = owed.len(), "published");
        for peer in owed {
            self.wake(&peer);
        }
        Ok(())
    }

    /// A new activity by local user `nick`, sealed with the instance key, and its envelope as
    /// posted to inboxes.
    pub(super) fn seal(&self, nick: &str, payload: Payload) -> (Activity, String) {
        let actor = Address::new(nick, &self.inner.domain);
        let activity = Activity::new(&self.inner.base_url, actor, unix_now(), payload);
        let key = self.inner.key.clone();
        let envelope = Envelope::seal(&activity, key.key_id(), |m| key.sign(m));
        let body = String::from_utf8(envelope.to_bytes()).unwrap_or_default();
        (activity, body)
    }

    /// Wakes `peer`'s delivery worker, if it runs.
    pub(super) fn wake(&self, peer: &str) {
        if let Some(w) = crate::chat::lock(&self.inner.workers).get(peer) {
            w.notify_one();
        }
    }

    /// Starts the delivery worker of `peer` unless it runs.
    pub(super) fn start_worker(&self, peer: &str) {
        let shutdown = self.shutdown();
        let wake = {
            let mut workers = crate::chat::lock(&self.inner.workers);
            if workers.contains_key(peer) {
                return;
            }
            let wake = Arc::new(Notify::new());
            workers.insert(peer.to_owned(), wake.clone());
            wake
        };
        let fed = self.clone();
        let peer = peer.to_owned();
        let span = tracing::info_span!("deliver", %peer);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                fed.deliver_loop(&peer, wake, shutdown).await;
                crate::chat::lock(&fed.inner.workers).remove(&peer);
            },
            span,
        ));
    }

    async fn deliver_loop(
        &self,
        peer: &str,
        wake: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let url = format!("{}/api/s2s/inbox", self.inner.scheme.base_url(peer));
        loop {
            // Wait until the schedule allows an attempt.
            let wait = self.until_due(peer).await;
            if let Some(wait) = wait {
                tokio::select! {
                    _ = crate::app::shutting_down(&mut shutdown) => return,
                    _ = tokio::time::sleep(wait) => {}
                    _ = wake.notified() => {}
                }
                continue;
            }
            let p = peer.to_owned();
            let owed = match self
                .inner
                .store
                .call(move |conn| db::owed(conn, &p, BATCH))
                .await
            {
                Ok(owed) => owed,
                Err(e) => {
                    tracing::warn!("cannot read the outbox: {e}");
                    return;
                }
            };
            if owed.is_empty() {
                tokio::select! {
                    _ = crate::app::shutting_down(&mut shutdown) => return,
                    _ = wake.notified() => {}
                    // Re-read now and then, in case a wake-up was lost to a restart of the worker.
                    _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
                }
                continue;
            }
            for (seq, body) in owed {
                if *shutdown.borrow() {
                    return;
                }
                let failure = match self.inner.client.post_json(&url, body.into_bytes()).await {
                    Ok(()) => None,
                    Err(e) if e.is_permanent() => {
                        // The peer refused this activity for good (4xx): retrying cannot help,
                        // and holding it back would block everything after it.
                        tracing::warn!(seq, "peer refused an activity: {e}; dropped");
                        Some(refusal_reason(peer, &e))
                    }
                    Err(e) => {
                        tracing::info!(seq, "delivery failed: {e}");
                        self.on_failure(peer).await;
                        break;
                    }
                };
                let p = peer.to_owned();
                match self
                    .inner
                    .store
                    .call(move |conn| db::settle(conn, &p, seq, failure.as_deref()))
                    .await
                {
                    Ok(Some(settled)) => self.settled(settled),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(seq, "cannot record a delivery: {e}"),
                }
                self.on_success(peer).await;
            }
        }
    }
}

/// Why `peer` refused an activity for good, in words for the sender of a private message.
fn refusal_reason(peer: &str, e: &super::client::FetchError) -> String {
    match e {
        super::client::FetchError::Status(code, text) => {
            let text = rosewire_shell::sanitize(text.trim());
            format!("{peer} refused it ({code}): {text}")
        }
        other => format!("{peer} refused it: {other}"),
    }
}
