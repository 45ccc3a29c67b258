//! What the SSH and HTTP accept loops share: accepting with a back-off when the process runs
//! out of file descriptors, counting connections per source address, logging refusals
//! without flooding the log, draining open connections on shutdown, and a stream that can be
//! cut from outside.
//!
//! **Invariant:** an accept loop never waits on a peer. Whoever is refused is closed at once,
//! so a flood of idle connections costs a file descriptor for microseconds, not for as long
//! as the flood lasts.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// First pause after a failed `accept`; it doubles while failures last.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest pause between two `accept` attempts while they keep failing (say, out of file
/// descriptors): long enough not to spin, short enough to recover quickly.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Refusal lines logged per [`LOG_WINDOW`]; past that they are only counted.
const LOG_BURST: u32 = 10;
/// The window over which [`LOG_BURST`] applies.
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// The address limits are counted against: an IPv4 address, or an IPv6 /64 (one host is
/// usually given a whole /64, so counting single IPv6 addresses would count nothing).
pub fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
    }
}

/// A listener's accept side: retries failed accepts with a growing pause instead of spinning.
pub struct Acceptor {
    listener: TcpListener,
    /// `"ssh"` or `"http"`, for the log.
    what: &'static str,
    /// Pause before the next attempt after a failure; reset by a success.
    backoff: Duration,
    log: LogLimiter,
}

impl Acceptor {
    pub fn new(listener: TcpListener, what: &'static str) -> Acceptor {
        Acceptor {
            listener,
            what,
            backoff: ACCEPT_BACKOFF_MIN,
            log: LogLimiter::new(),
        }
    }

    /// The next connection. Cancel-safe: nothing is lost if the future is dropped.
    pub async fn next(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(pair) => {
                    self.backoff = ACCEPT_BACKOFF_MIN;
                    return pair;
                }
                // The peer gave up between the handshake and our accept: nothing to wait for.
                Err(e) if transient(&e) => continue,
                Err(e) => {
                    let (what, pause) = (self.what, self.backoff);
                    self.log
                        .log(|| tracing::warn!("{what} accept failed: {e}; retrying in {pause:?}"));
                    tokio::time::sleep(pause).await;
                    self.backoff = (pause * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
    }
}

fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Logs at most [`LOG_BURST`] lines per [`LOG_WINDOW`]; counts the rest and says how many
/// were left out with the first line of a later window.
pub struct LogLimiter {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new() -> LogLimiter {
        LogLimiter {
            window_start: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }

    /// Runs `line` (a tracing call) unless this window's lines are spent.
    pub fn log(&mut self, line: impl FnOnce()) {
        if self.admit(Instant::now()) {
            line();
        }
    }

    fn admit(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= LOG_WINDOW {
            if self.suppressed > 0 {
                tracing::warn!(
                    "{} more refused or failed connections were not logged",
                    self.suppressed
                );
            }
            *self = LogLimiter {
                window_start: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if self.logged < LOG_BURST {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter::new()
    }
}

/// Connections counted in total and per source address; each [`Slot`] gives its place back
/// when dropped.
#[derive(Clone, Default)]
pub struct Counter {
    counts: Arc<Mutex<Counts>>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// One counted connection.
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Counter {
    /// Counts a connection from `ip` if `admit(total, from_this_address)` agrees; both
    /// numbers are before this one. Check and count are one step, so racing connections
    /// cannot both take the last place.
    pub fn try_take<E>(
        &self,
        ip: IpAddr,
        admit: impl FnOnce(usize, usize) -> Result<(), E>,
    ) -> Result<Slot, E> {
        let mut counts = lock(&self.counts);
        let here = counts.per_address.get(&ip).copied().unwrap_or(0);
        admit(counts.total, here)?;
        counts.total += 1;
        *counts.per_address.entry(ip).or_insert(0) += 1;
        Ok(Slot {
            counts: self.counts.clone(),
            ip,
        })
    }

    pub fn total(&self) -> usize {
        lock(&self.counts).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_address.remove(&self.ip);
            }
        }
    }
}

/// The counts stay consistent under a panic elsewhere (every update is one step), so a
/// poisoned lock is still usable.
fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    counts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Open connections, so shutdown can wait for the last one.
#[derive(Clone)]
pub struct Drain {
    live: Arc<watch::Sender<usize>>,
}

/// Held by one connection's task for as long as it runs.
pub struct DrainGuard {
    live: Arc<watch::Sender<usize>>,
}

impl Drain {
    pub fn new() -> Drain {
        Drain {
            live: Arc::new(watch::Sender::new(0)),
        }
    }

    pub fn enter(&self) -> DrainGuard {
        self.live.send_modify(|n| *n += 1);
        DrainGuard {
            live: self.live.clone(),
        }
    }

    /// Waits until every guard is dropped, at most `grace`; returns whether they all were.
    pub async fn wait(&self, grace: Duration) -> bool {
        let mut live = self.live.subscribe();
        let emptied = tokio::time::timeout(grace, live.wait_for(|n| *n == 0))
            .await
            .is_ok();
        emptied
    }
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new()
    }
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        self.live.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A stream its owner can be made to let go of: once [`Cut::cut`], reads see end-of-file
/// and writes fail, so the task that owns it (say, russh's session task, which we cannot
/// abort) ends and closes the socket.
pub struct Cuttable<S> {
    inner: S,
    state: Arc<CutState>,
}

/// The outside end of a [`Cuttable`].
#[derive(Clone)]
pub struct Cut {
    state: Arc<CutState>,
}

#[derive(Default)]
struct CutState {
    cut: AtomicBool,
    /// The tasks last blocked reading and writing, woken by [`Cut::cut`].
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl<S> Cuttable<S> {
    pub fn new(inner: S) -> (Cuttable<S>, Cut) {
        let state = Arc::new(CutState::default());
        (
            Cuttable {
                inner,
                state: state.clone(),
            },
            Cut { state },
        )
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl Cut {
    /// Whether [`Cut::cut`] was called.
    pub fn is_cut(&self) -> bool {
        self.state.is_cut()
    }

    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::Release);
        self.state.reader.wake();
        self.state.writer.wake();
    }
}

impl CutState {
    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }
}

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "connection cut by the server")
}

impl<S: AsyncRead + Unpin> AsyncRead for Cuttable<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.state.reader.register(cx.waker());
        if this.state.is_cut() {
            // End-of-file: the owner sees the peer gone.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Cuttable<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.state.writer.register(cx.waker());
        if this.state.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.state.writer.register(cx.waker());
        if this.state.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_counter_applies_the_rule_per_address_and_gives_places_back() {
        let counter = Counter::default();
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let at_most_two_each = |_total: usize, here: usize| if here < 2 { Ok(()) } else { Err(()) };
        let first = counter.try_take(a, at_most_two_each).unwrap();
        let _second = counter.try_take(a, at_most_two_each).unwrap();
        assert!(counter.try_take(a, at_most_two_each).is_err());
        let _other = counter.try_take(b, at_most_two_each).unwrap();
        assert_eq!(counter.total(), 3);
        drop(first);
        assert_eq!(counter.total(), 2);
        assert!(counter.try_take(a, at_most_two_each).is_ok());
    }

    #[test]
    fn the_log_limiter_lets_a_burst_through_per_window() {
        let mut log = LogLimiter::new();
        let t0 = log.window_start;
        let shown = (0..100).filter(|_| log.admit(t0)).count();
        assert_eq!(shown, LOG_BURST as usize);
        assert_eq!(log.suppressed, 100 - u64::from(LOG_BURST));
        assert!(
            log.admit(t0 + LOG_WINDOW),
            "a new window lets lines through"
        );
        assert_eq!(log.suppressed, 0);
    }

    #[tokio::test]
    async fn a_cut_stream_wakes_its_blocked_reader_with_end_of_file() {
        let (near, far) = tokio::io::duplex(64);
        let (mut stream, cut) = Cuttable::new(near);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let n = stream.read(&mut buf).await;
            (n.ok(), stream.write_all(b"x").await.is_err())
        });
        tokio::task::yield_now().await;
        cut.cut();
        let (read, write_failed) = reader.await.unwrap();
        assert_eq!(read, Some(0));
        assert!(write_failed);
        drop(far);
    }

    #[tokio::test]
    async fn the_drain_waits_for_every_guard() {
        let drain = Drain::new();
        let guard = drain.enter();
        assert!(!drain.wait(Duration::from_millis(10)).await);
        drop(guard);
        assert!(drain.wait(Duration::from_millis(10)).await);
    }
}
