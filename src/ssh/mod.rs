//! The SSH adapter: accepts connections, authenticates keys, and hands each channel to a
//! session task.
//!
//! - [`serve`]: the accept loop, with a connection limit and a per-address rate of new
//!   connections; one tracing span per connection.
//! - [`handler`]: the thin russh `Handler`: authentication (fails closed), and channel
//!   requests answered and forwarded to the channel's task.
//! - [`session`]: one task per channel owning all its state: the interactive shell, plain
//!   line mode, or one exec command.

mod handler;
mod session;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::keys::PrivateKey;
use russh::{MethodKind, MethodSet, SshId};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

use crate::app::App;

/// How long sessions get to say goodbye after a shutdown notice before they are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Time a rejected authentication takes, so rejections do not reveal why they happened.
const AUTH_REJECTION_TIME: Duration = Duration::from_millis(500);
/// Keepalives a client may leave unanswered before the connection is dropped.
const KEEPALIVE_MAX: usize = 3;
/// Authentication attempts per connection (each offered key counts).
const MAX_AUTH_ATTEMPTS: usize = 10;
/// Addresses remembered by the connection-rate limiter before old entries are dropped.
const RATE_TABLE_LIMIT: usize = 65_536;

pub fn russh_config(app: &App, host_key: PrivateKey) -> russh::server::Config {
    let ssh = &app.config.ssh;
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    // Only to explain to a client without a key how to make one; it never accepts.
    methods.push(MethodKind::KeyboardInteractive);
    russh::server::Config {
        server_id: SshId::Standard(std::borrow::Cow::Borrowed(concat!(
            "SSH-2.0-RoseWire_",
            env!("CARGO_PKG_VERSION")
        ))),
        methods,
        auth_rejection_time: AUTH_REJECTION_TIME,
        // OpenSSH probes with "none" first; don't make every login wait for that rejection.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        inactivity_timeout: Some(Duration::from_secs(ssh.inactivity_timeout_secs)),
        keepalive_interval: (ssh.keepalive_interval_secs > 0)
            .then(|| Duration::from_secs(ssh.keepalive_interval_secs)),
        keepalive_max: KEEPALIVE_MAX,
        max_auth_attempts: MAX_AUTH_ATTEMPTS,
        nodelay: true,
        ..Default::default()
    }
}

/// New connections per address: a token bucket refilled at the configured rate per minute.
struct AddressRate {
    per_minute: u32,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl AddressRate {
    fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= RATE_TABLE_LIMIT {
            let minute = Duration::from_secs(60);
            self.buckets
                .retain(|_, (_, last)| now.saturating_duration_since(*last) < minute);
        }
        let cap = f64::from(self.per_minute);
        let (tokens, last) = self.buckets.entry(ip).or_insert((cap, now));
        *tokens =
            (*tokens + now.saturating_duration_since(*last).as_secs_f64() * cap / 60.0).min(cap);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Accepts SSH connections on `listener` until `shutdown` turns true, then gives open
/// sessions [`SHUTDOWN_GRACE`] to finish and returns.
pub async fn serve(
    app: App,
    listener: TcpListener,
    host_key: PrivateKey,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = Arc::new(russh_config(&app, host_key));
    let max = app.config.ssh.max_connections;
    let permits = Arc::new(Semaphore::new(max));
    let mut rate = AddressRate {
        per_minute: app.config.ssh.connections_per_minute_per_address,
        buckets: HashMap::new(),
    };
    let ids = AtomicU64::new(1);
    loop {
        // Take a permit before accepting: at the limit, new clients wait in the backlog.
        let permit = tokio::select! {
            _ = crate::app::shutting_down(&mut shutdown) => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = crate::app::shutting_down(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("ssh accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !rate.allow(peer.ip(), Instant::now()) {
            tracing::warn!(%peer, "ssh connection refused: too many new connections from this address");
            continue;
        }
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%peer, conn = id, "ssh connection accepted");
        let span = tracing::info_span!("ssh", conn = id, %peer, user = tracing::field::Empty);
        let handler = handler::Handler::new(app.clone(), peer, span.clone(), shutdown.clone());
        let config = config.clone();
        let mut down = shutdown.clone();
        tokio::spawn(
            async move {
                let _permit = permit;
                run_connection(config, stream, peer, handler, &mut down).await;
            }
            .instrument(span),
        );
    }
    drop(listener);
    // Every connection holds a permit: when all are back, every session has ended.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(
        SHUTDOWN_GRACE + Duration::from_secs(1),
        permits.acquire_many(all),
    )
    .await
    .is_err()
    {
        tracing::warn!("some ssh connections did not close in time");
    }
}

async fn run_connection(
    config: Arc<russh::server::Config>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    handler: handler::Handler,
    shutdown: &mut watch::Receiver<bool>,
) {
    // russh applies `nodelay` only in its own accept loop; this is ours.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("set_nodelay failed: {e}");
    }
    let session = match russh::server::run_stream(config, stream, handler).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%peer, "ssh handshake failed: {e}");
            return;
        }
    };
    let handle = session.handle();
    tokio::pin!(session);
    tokio::select! {
        result = &mut session => {
            match result {
                Ok(()) => tracing::info!("ssh connection closed"),
                Err(e) => tracing::info!("ssh connection ended: {e}"),
            }
        }
        _ = crate::app::shutting_down(shutdown) => {
            // Sessions print a notice on shutdown; give them a moment, then disconnect.
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut session).await.is_err() {
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, "server shutting down".into(), "en".into())
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_rate_allows_the_configured_burst_then_refills() {
        let mut rate = AddressRate {
            per_minute: 3,
            buckets: HashMap::new(),
        };
        let ip: IpAddr = [127, 0, 0, 9].into();
        let other: IpAddr = [127, 0, 0, 10].into();
        let t0 = Instant::now();
        assert!((0..3).all(|_| rate.allow(ip, t0)));
        assert!(!rate.allow(ip, t0));
        assert!(rate.allow(other, t0));
        assert!(
            rate.allow(ip, t0 + Duration::from_secs(20)),
            "one token per 20 s at 3/min"
        );
    }
}
