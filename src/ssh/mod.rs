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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use russh::keys::PrivateKey;
use russh::{MethodKind, MethodSet, SshId};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::accept::{self, Acceptor, Counter, Cut, Cuttable, Drain, LogLimiter, Slot};
use crate::app::App;
use crate::config::SshConfig;
use crate::rate::RateTable;

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
///
/// Past `max_startups`, OpenSSH drops new connections at random, so a flood from a few
/// addresses turns most legitimate logins away too. Here a new connection that would be
/// dropped makes room instead when some address holds more unauthenticated connections than
/// the newcomer's would after it: the oldest connection of the address holding the most is
/// cut. A client from an address the flood does not use always gets in; the flood only
/// displaces itself.
struct Gate {
    unauthenticated: Counter,
    /// The same connections, oldest first per address, with the means to cut them.
    waiting: Waiting,
    per_address: usize,
    startups: crate::config::MaxStartups,
}

/// A connection's place among the unauthenticated: given back when dropped.
pub(crate) struct Startup {
    _slot: Slot,
    _entry: WaitingEntry,
}

impl Gate {
    fn new(ssh: &SshConfig) -> Gate {
        Gate {
            unauthenticated: Counter::default(),
            waiting: Waiting::default(),
            per_address: ssh.max_unauthenticated_per_address,
            startups: ssh.max_startups,
        }
    }

    /// A place among unauthenticated connections for `ip` (see [`accept::source`]); `roll`
    /// is a number in 0..100 drawn for this connection (injected so tests can choose it);
    /// `cut` ends the connection if a newcomer displaces it.
    fn admit(&self, ip: IpAddr, roll: u32, id: u64, cut: &Cut) -> Result<Startup, Refusal> {
        let per_address = |here: usize| {
            if here >= self.per_address {
                Err(Refusal::PerAddress)
            } else {
                Ok(())
            }
        };
        let taken = self.unauthenticated.try_take(ip, |total, here| {
            per_address(here)?;
            if roll < self.startups.drop_percent(total) {
                Err(Refusal::Startups)
            } else {
                Ok(())
            }
        });
        let slot = match taken {
            Err(Refusal::Startups) if self.waiting.displace(ip) => self
                .unauthenticated
                .try_take(ip, |_, here| per_address(here))?,
            other => other?,
        };
        Ok(Startup {
            _slot: slot,
            _entry: self.waiting.add(ip, id, cut.clone()),
        })
    }
}

/// Unauthenticated connections of each address, oldest first: (connection id, its cut).
type ByAddress = HashMap<IpAddr, VecDeque<(u64, Cut)>>;

/// Unauthenticated connections by address, oldest first.
#[derive(Clone, Default)]
struct Waiting(Arc<Mutex<ByAddress>>);

/// A connection's entry in [`Waiting`], removed when dropped.
struct WaitingEntry {
    waiting: Waiting,
    ip: IpAddr,
    id: u64,
}

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByAddress> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn add(&self, ip: IpAddr, id: u64, cut: Cut) -> WaitingEntry {
        self.lock().entry(ip).or_default().push_back((id, cut));
        WaitingEntry {
            waiting: self.clone(),
            ip,
            id,
        }
    }

    /// Cuts the oldest connection of the address holding the most, if that is more than a
    /// connection from `ip` would make its own count. Returns whether one was cut.
    fn displace(&self, ip: IpAddr) -> bool {
        let mut waiting = self.lock();
        let after = waiting.get(&ip).map_or(0, VecDeque::len) + 1;
        let heaviest = waiting
            .iter_mut()
            .filter(|(_, conns)| conns.len() > after)
            .max_by_key(|(_, conns)| conns.len());
        let Some((_, conns)) = heaviest else {
            return false;
        };
        match conns.pop_front() {
            Some((_, cut)) => {
                cut.cut();
                true
            }
            None => false,
        }
    }
}

impl Drop for WaitingEntry {
    fn drop(&mut self) {
        let mut waiting = self.waiting.lock();
        if let Some(conns) = waiting.get_mut(&self.ip) {
            conns.retain(|(id, _)| *id != self.id);
            if conns.is_empty() {
                waiting.remove(&self.ip);
            }
        }
    }
}

/// A connection's way from unauthenticated to authenticated, owned by its handler.
pub(crate) struct Login {
    /// Its place among unauthenticated connections, given back once logged in.
    startup: Option<Startup>,
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
    // New connections per address: a token bucket refilled at the configured rate a minute.
    let mut rate = RateTable::per_minute(ssh.connections_per_minute_per_address, RATE_TABLE_LIMIT);
    let mut acceptor = Acceptor::new(listener, "ssh");
    let mut refusals = LogLimiter::new();
    let drain = Drain::new();
    let ids = AtomicU64::new(1);
    loop {
        let (stream, peer) = tokio::select! {
            _ = crate::app::shutting_down(&mut shutdown) => break,
            accepted = acceptor.next() => accepted,
        };
        let source = accept::source(peer.ip());
        let id = ids.fetch_add(1, Ordering::Relaxed);
        // russh runs the session in a task of its own that we cannot abort; cutting the
        // stream makes it let go (at the login deadline, or when a newcomer displaces it).
        let (stream, cut) = Cuttable::new(stream);
        let admitted = if rate.allow(source, Instant::now()) {
            gate.admit(source, rand::thread_rng().gen_range(0..100), id, &cut)
        } else {
            Err(Refusal::Rate)
        };
        let startup = match admitted {
            Ok(startup) => startup,
            Err(why) => {
                let unauthenticated = gate.unauthenticated.total();
                refusals.log(
                    || tracing::warn!(%peer, unauthenticated, "ssh connection refused: {why}"),
                );
                drop(stream);
                continue;
            }
        };
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
                run_connection(
                    config,
                    (stream, cut),
                    peer,
                    handler,
                    logged_in,
                    grace,
                    &mut down,
                )
                .await;
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
    (stream, cut): (Cuttable<tokio::net::TcpStream>, Cut),
    peer: SocketAddr,
    handler: handler::Handler,
    logged_in: watch::Receiver<bool>,
    grace: Duration,
    shutdown: &mut watch::Receiver<bool>,
) {
    // russh applies `nodelay` only in its own accept loop; this is ours.
    if let Err(e) = stream.get_ref().set_nodelay(true) {
        tracing::debug!("set_nodelay failed: {e}");
    }
    let authenticated = {
        let logged_in = logged_in.clone();
        move || *logged_in.borrow()
    };
    let deadline = login_deadline(logged_in, grace);
    tokio::pin!(deadline);
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

    /// Admits a connection with a fresh cut handle, which the caller does not need.
    fn admit(gate: &Gate, ip: IpAddr, roll: u32) -> Result<Startup, Refusal> {
        admit_cut(gate, ip, roll).map(|(startup, _)| startup)
    }

    fn admit_cut(gate: &Gate, ip: IpAddr, roll: u32) -> Result<(Startup, Cut), Refusal> {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let (_, cut) = Cuttable::new(());
        let startup = gate.admit(ip, roll, IDS.fetch_add(1, Ordering::Relaxed), &cut)?;
        Ok((startup, cut))
    }

    #[test]
    fn past_max_startups_a_newcomer_displaces_the_oldest_of_the_heaviest_address() {
        let gate = gate(10, "4");
        let flood: IpAddr = [127, 0, 0, 11].into();
        let other: IpAddr = [127, 0, 0, 12].into();
        let user: IpAddr = [127, 0, 0, 9].into();
        let mut held: Vec<(Startup, Cut)> = (0..3)
            .map(|_| admit_cut(&gate, flood, 99).unwrap())
            .collect();
        held.push(admit_cut(&gate, other, 99).unwrap());
        // Full. A user from a new address cuts the flood's oldest connection, not another's.
        let (_user, user_cut) = admit_cut(&gate, user, 99).unwrap();
        let cut: Vec<bool> = held.iter().map(|(_, c)| c.is_cut()).collect();
        assert_eq!(cut, [true, false, false, false]);
        drop(held.remove(0));
        // The flood coming back cannot displace anyone: it would hold as many as the most.
        assert_eq!(admit(&gate, flood, 99).err(), Some(Refusal::Startups));
        // Nor can addresses holding one each displace one another.
        assert_eq!(admit(&gate, other, 99).err(), Some(Refusal::Startups));
        assert!(!user_cut.is_cut());
        assert!(held.iter().all(|(_, c)| !c.is_cut()));
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
        let held: Vec<Startup> = (0..2).map(|_| admit(&gate, ip, 99).unwrap()).collect();
        assert_eq!(admit(&gate, ip, 99).err(), Some(Refusal::PerAddress));
        assert!(admit(&gate, [127, 0, 0, 10].into(), 99).is_ok());
        drop(held);
        assert!(
            admit(&gate, ip, 99).is_ok(),
            "a closed connection gives its place back"
        );
    }

    #[test]
    fn the_gate_drops_at_random_past_start_and_always_at_full() {
        let gate = gate(100, "2:50:4");
        let ip: IpAddr = [127, 0, 0, 9].into();
        let mut held = vec![admit(&gate, ip, 0).unwrap(), admit(&gate, ip, 0).unwrap()];
        // At start (2 open) the drop chance is 50%: a roll under it is dropped.
        assert_eq!(admit(&gate, ip, 49).err(), Some(Refusal::Startups));
        held.push(admit(&gate, ip, 50).unwrap());
        // 3 open: 75%.
        assert_eq!(admit(&gate, ip, 74).err(), Some(Refusal::Startups));
        held.push(admit(&gate, ip, 75).unwrap());
        // Full: every roll is dropped.
        assert_eq!(admit(&gate, ip, 99).err(), Some(Refusal::Startups));
    }

    #[test]
    fn a_login_moves_the_connection_to_the_authenticated_pool() {
        let gate = gate(1, "10:30:100");
        let ip: IpAddr = [127, 0, 0, 9].into();
        let sessions = Arc::new(Semaphore::new(1));
        let (done, logged_in) = watch::channel(false);
        let mut login = Login {
            startup: Some(admit(&gate, ip, 0).unwrap()),
            sessions: sessions.clone(),
            permit: None,
            done,
        };
        assert!(admit(&gate, ip, 0).is_err());
        assert!(login.complete());
        assert!(*logged_in.borrow());
        assert_eq!(gate.unauthenticated.total(), 0);
        assert!(
            admit(&gate, ip, 0).is_ok(),
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
