//! The SSH adapter: accepts connections, authenticates keys, and hands each channel to a
//! session task.
//!
//! - [`serve`]: the accept loop: a per-address rate of new connections, caps on
//!   unauthenticated connections (per address and OpenSSH's `MaxStartups`), a login deadline,
//!   and a separate cap on authenticated ones; one tracing span per connection.
//! - [`handler`]: the thin russh `Handler`: authentication (fails closed), and channel
//!   requests answered and forwarded to the channel's task.
//! - [`session`]: one task per channel owning all its state: the interactive shell, plain
//!   line mode, or one exec command.

mod handler;
mod session;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use russh::keys::PrivateKey;
use russh::{MethodKind, MethodSet, SshId};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::accept::{Acceptor, Counter, Cuttable, Drain, LogLimiter, Slot};
use crate::app::App;
use crate::config::SshConfig;

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
/// After a shutdown disconnect is sent, how long the session gets to deliver it before its
/// stream is cut.
const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

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

/// Why a new connection was closed before it was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `ssh.connections_per_minute_per_address`.
    Rate,
    /// `ssh.max_unauthenticated_per_address`.
    PerAddress,
    /// `ssh.max_startups`, at random past `start` or always at `full`.
    Startups,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Rate => "too many new connections from this address",
            Refusal::PerAddress => "too many unauthenticated connections from this address",
            Refusal::Startups => "too many unauthenticated connections (max_startups)",
        })
    }
}

/// Admission of new connections, which count as unauthenticated until they log in.
struct Gate {
    unauthenticated: Counter,
    per_address: usize,
    startups: crate::config::MaxStartups,
}

impl Gate {
    fn new(ssh: &SshConfig) -> Gate {
        Gate {
            unauthenticated: Counter::default(),
            per_address: ssh.max_unauthenticated_per_address,
            startups: ssh.max_startups,
        }
    }

    /// A place among unauthenticated connections for `ip`; `roll` is a number in 0..100
    /// drawn for this connection (injected so tests can choose it).
    fn admit(&self, ip: IpAddr, roll: u32) -> Result<Slot, Refusal> {
        self.unauthenticated.try_take(ip, |total, here| {
            if here >= self.per_address {
                Err(Refusal::PerAddress)
            } else if roll < self.startups.drop_percent(total) {
                Err(Refusal::Startups)
            } else {
                Ok(())
            }
        })
    }
}

/// A connection's way from unauthenticated to authenticated, owned by its handler.
pub(crate) struct Login {
    /// Its place among unauthenticated connections, given back once logged in.
    startup: Option<Slot>,
    /// The authenticated pool (`ssh.max_connections`).
    sessions: Arc<Semaphore>,
    /// Its place in that pool once logged in, held for the connection's life.
    permit: Option<OwnedSemaphorePermit>,
    /// Tells the login deadline that the connection has logged in.
    done: watch::Sender<bool>,
}

impl Login {
    /// Moves the connection into the authenticated pool; false when that pool is full.
    pub(crate) fn complete(&mut self) -> bool {
        if self.permit.is_none() {
            match self.sessions.clone().try_acquire_owned() {
                Ok(permit) => self.permit = Some(permit),
                Err(_) => return false,
            }
        }
        self.startup = None;
        self.done.send_replace(true);
        true
    }
}

/// Accepts SSH connections on `listener` until `shutdown` turns true, then gives open
/// sessions [`SHUTDOWN_GRACE`] to finish and returns.
///
/// The loop never waits for a place: a connection over a limit is closed as soon as it is
/// accepted, so a flood cannot hold the door shut for a user who can log in.
pub async fn serve(
    app: App,
    listener: TcpListener,
    host_key: PrivateKey,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = Arc::new(russh_config(&app, host_key));
    let ssh = &app.config.ssh;
    let sessions = Arc::new(Semaphore::new(ssh.max_connections));
    let grace = Duration::from_secs(ssh.login_grace_secs);
    let gate = Gate::new(ssh);
    let mut rate = AddressRate {
        per_minute: ssh.connections_per_minute_per_address,
        buckets: HashMap::new(),
    };
    let mut acceptor = Acceptor::new(listener, "ssh");
    let mut refusals = LogLimiter::new();
    let drain = Drain::new();
    let ids = AtomicU64::new(1);
    loop {
        let (stream, peer) = tokio::select! {
            _ = crate::app::shutting_down(&mut shutdown) => break,
            accepted = acceptor.next() => accepted,
        };
        let admitted = if rate.allow(peer.ip(), Instant::now()) {
            gate.admit(peer.ip(), rand::thread_rng().gen_range(0..100))
        } else {
            Err(Refusal::Rate)
        };
        let startup = match admitted {
            Ok(slot) => slot,
            Err(why) => {
                let unauthenticated = gate.unauthenticated.total();
                refusals.log(
                    || tracing::warn!(%peer, unauthenticated, "ssh connection refused: {why}"),
                );
                drop(stream);
                continue;
            }
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%peer, conn = id, "ssh connection accepted");
        let span = tracing::info_span!("ssh", conn = id, %peer, user = tracing::field::Empty);
        let (done, logged_in) = watch::channel(false);
        let login = Login {
            startup: Some(startup),
            sessions: sessions.clone(),
            permit: None,
            done,
        };
        let handler =
            handler::Handler::new(app.clone(), peer, span.clone(), shutdown.clone(), login);
        let config = config.clone();
        let mut down = shutdown.clone();
        let live = drain.enter();
        tokio::spawn(
            async move {
                let _live = live;
                run_connection(config, stream, peer, handler, logged_in, grace, &mut down).await;
            }
            .instrument(span),
        );
    }
    drop(acceptor);
    if !drain.wait(SHUTDOWN_GRACE + Duration::from_secs(1)).await {
        tracing::warn!("some ssh connections did not close in time");
    }
}

/// Resolves when `grace` has passed without a login; never once logged in.
async fn login_deadline(mut logged_in: watch::Receiver<bool>, grace: Duration) {
    let in_time = tokio::time::timeout(grace, logged_in.wait_for(|done| *done))
        .await
        .is_ok();
    if in_time {
        // Logged in, or the handler is gone (the session ended by itself).
        std::future::pending::<()>().await;
    }
}

async fn run_connection(
    config: Arc<russh::server::Config>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    handler: handler::Handler,
    logged_in: watch::Receiver<bool>,
    grace: Duration,
    shutdown: &mut watch::Receiver<bool>,
) {
    // russh applies `nodelay` only in its own accept loop; this is ours.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("set_nodelay failed: {e}");
    }
    let authenticated = {
        let logged_in = logged_in.clone();
        move || *logged_in.borrow()
    };
    let deadline = login_deadline(logged_in, grace);
    tokio::pin!(deadline);
    // russh runs the session in a task of its own that we cannot abort; cutting the stream
    // makes it let go.
    let (stream, cut) = Cuttable::new(stream);
    // Banner exchange: dropping this future closes the socket.
    let session = tokio::select! {
        started = russh::server::run_stream(config, stream, handler) => match started {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, "ssh handshake failed: {e}");
                return;
            }
        },
        _ = &mut deadline => {
            tracing::info!("ssh connection closed: no login within the grace time");
            return;
        }
        _ = crate::app::shutting_down(shutdown) => return,
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
        _ = &mut deadline => {
            tracing::info!("ssh connection closed: no login within the grace time");
            cut.cut();
        }
        _ = crate::app::shutting_down(shutdown) => {
            if !authenticated() {
                cut.cut();
                return;
            }
            // Sessions print a notice on shutdown; give them a moment, then disconnect.
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut session).await.is_err() {
                let bye = handle.disconnect(
                    russh::Disconnect::ByApplication,
                    "server shutting down".into(),
                    "en".into(),
                );
                let _ = tokio::time::timeout(DISCONNECT_GRACE, bye).await;
                if tokio::time::timeout(DISCONNECT_GRACE, &mut session).await.is_err() {
                    cut.cut();
                }
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

    fn gate(per_address: usize, startups: &str) -> Gate {
        let mut ssh = SshConfig {
            max_unauthenticated_per_address: per_address,
            ..SshConfig::default()
        };
        ssh.max_startups = startups.parse().unwrap();
        Gate::new(&ssh)
    }

    #[test]
    fn the_gate_caps_unauthenticated_connections_per_address() {
        let gate = gate(2, "100:30:200");
        let ip: IpAddr = [127, 0, 0, 9].into();
        let held: Vec<Slot> = (0..2).map(|_| gate.admit(ip, 99).unwrap()).collect();
        assert_eq!(gate.admit(ip, 99).err(), Some(Refusal::PerAddress));
        assert!(gate.admit([127, 0, 0, 10].into(), 99).is_ok());
        drop(held);
        assert!(
            gate.admit(ip, 99).is_ok(),
            "a closed connection gives its place back"
        );
    }

    #[test]
    fn the_gate_drops_at_random_past_start_and_always_at_full() {
        let gate = gate(100, "2:50:4");
        let ip: IpAddr = [127, 0, 0, 9].into();
        let mut held = vec![gate.admit(ip, 0).unwrap(), gate.admit(ip, 0).unwrap()];
        // At start (2 open) the drop chance is 50%: a roll under it is dropped.
        assert_eq!(gate.admit(ip, 49).err(), Some(Refusal::Startups));
        held.push(gate.admit(ip, 50).unwrap());
        // 3 open: 75%.
        assert_eq!(gate.admit(ip, 74).err(), Some(Refusal::Startups));
        held.push(gate.admit(ip, 75).unwrap());
        // Full: every roll is dropped.
        assert_eq!(gate.admit(ip, 99).err(), Some(Refusal::Startups));
    }

    #[test]
    fn a_login_moves_the_connection_to_the_authenticated_pool() {
        let gate = gate(1, "10:30:100");
        let ip: IpAddr = [127, 0, 0, 9].into();
        let sessions = Arc::new(Semaphore::new(1));
        let (done, logged_in) = watch::channel(false);
        let mut login = Login {
            startup: Some(gate.admit(ip, 0).unwrap()),
            sessions: sessions.clone(),
            permit: None,
            done,
        };
        assert!(gate.admit(ip, 0).is_err());
        assert!(login.complete());
        assert!(*logged_in.borrow());
        assert_eq!(gate.unauthenticated.total(), 0);
        assert!(
            gate.admit(ip, 0).is_ok(),
            "no longer counted as unauthenticated"
        );
        assert_eq!(sessions.available_permits(), 0);
        let (done, _) = watch::channel(false);
        let mut second = Login {
            startup: None,
            sessions,
            permit: None,
            done,
        };
        assert!(!second.complete(), "the authenticated pool is full");
    }
}
