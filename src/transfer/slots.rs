//! Download slots per user: at most `limit` downloads of one user run at once, across all of
//! their sessions (shells and exec `get`); the others wait their turn in order, each told its
//! place in the line as it changes. A waiting download that is cancelled (its future dropped)
//! leaves the line; a running one gives its slot back when its [`Slot`] drops.
//!
//! Bounded: at most [`MAX_WAITING_PER_USER`] downloads of one user wait; users with nothing
//! running or waiting are forgotten.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::chat::lock;

/// Downloads of one user that may wait for a slot at once; more are refused.
pub const MAX_WAITING_PER_USER: usize = 32;

/// The download slots of an instance's users. Cheap to clone.
#[derive(Clone)]
pub struct Slots {
    inner: Arc<Inner>,
}

struct Inner {
    /// Downloads one user may run at once.
    limit: usize,
    users: Mutex<HashMap<i64, Line>>,
}

/// One user's running count and waiting line.
struct Line {
    running: usize,
    /// Tickets in arrival order.
    waiting: VecDeque<u64>,
    next_ticket: u64,
    /// Woken when a slot frees or the line moves.
    moved: Arc<Notify>,
}

/// A running download's slot; given back on drop.
pub struct Slot {
    slots: Slots,
    user: i64,
}

/// [`MAX_WAITING_PER_USER`] downloads of this user wait already.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{MAX_WAITING_PER_USER} of your downloads are waiting already; wait for some to finish")]
pub struct LineFull;

/// Leaves the line if dropped before its turn came (a cancelled wait).
struct Waiting<'a> {
    slots: &'a Slots,
    user: i64,
    ticket: u64,
    served: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.served {
            self.slots.leave(self.user, self.ticket);
        }
    }
}

impl Slots {
    pub fn new(limit: usize) -> Slots {
        Slots {
            inner: Arc::new(Inner {
                limit: limit.max(1),
                users: Mutex::default(),
            }),
        }
    }

    /// Waits for one of `user`'s slots. `place` is told the number of `user`'s downloads
    /// ahead in the line whenever it changes (not at all when a slot is free at once).
    pub async fn acquire(&self, user: i64, mut place: impl FnMut(usize)) -> Result<Slot, LineFull> {
        let (ticket, moved) = {
            let mut users = lock(&self.inner.users);
            let line = users.entry(user).or_insert_with(|| Line {
                running: 0,
                waiting: VecDeque::new(),
                next_ticket: 0,
                moved: Arc::new(Notify::new()),
            });
            if line.waiting.len() >= MAX_WAITING_PER_USER {
                return Err(LineFull);
            }
            line.next_ticket += 1;
            line.waiting.push_back(line.next_ticket);
            (line.next_ticket, line.moved.clone())
        };
        let mut waiting = Waiting {
            slots: self,
            user,
            ticket,
            served: false,
        };
        let mut told = None;
        loop {
            let notified = moved.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let ahead = {
                let mut users = lock(&self.inner.users);
                let line = users.get_mut(&user).expect("a waiting user keeps its line");
                let ahead = line.waiting.iter().position(|t| *t == ticket).unwrap_or(0);
                if ahead == 0 && line.running < self.inner.limit {
                    line.waiting.pop_front();
                    line.running += 1;
                    waiting.served = true;
                    // The next in line may have a slot too.
                    line.moved.notify_waiters();
                    return Ok(Slot {
                        slots: self.clone(),
                        user,
                    });
                }
                ahead
            };
            if told != Some(ahead) {
                told = Some(ahead);
                place(ahead);
            }
            notified.await;
        }
    }

    /// How many of `user`'s downloads run and wait now.
    #[cfg(test)]
    pub fn load(&self, user: i64) -> (usize, usize) {
        lock(&self.inner.users)
            .get(&user)
            .map_or((0, 0), |l| (l.running, l.waiting.len()))
    }

    /// Users with a line (running or waiting); for tests of the bound.
    #[cfg(test)]
    pub fn users(&self) -> usize {
        lock(&self.inner.users).len()
    }

    fn leave(&self, user: i64, ticket: u64) {
        self.change(user, |line| line.waiting.retain(|t| *t != ticket));
    }

    fn release(&self, user: i64) {
        self.change(user, |line| line.running = line.running.saturating_sub(1));
    }

    /// Changes `user`'s line, wakes its waiters, and forgets it once empty.
    fn change(&self, user: i64, f: impl FnOnce(&mut Line)) {
        let mut users = lock(&self.inner.users);
        let Some(line) = users.get_mut(&user) else {
            return;
        };
        f(line);
        line.moved.notify_waiters();
        if line.running == 0 && line.waiting.is_empty() {
            users.remove(&user);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.user);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn past_the_limit_downloads_wait_in_order_and_know_their_place() {
        run(async {
            let slots = Slots::new(2);
            let a = slots
                .acquire(7, |_| panic!("a slot was free"))
                .await
                .unwrap();
            let b = slots
                .acquire(7, |_| panic!("a slot was free"))
                .await
                .unwrap();
            // Another user is not held up by user 7.
            let other = slots.acquire(8, |_| panic!("another user's slot")).await;
            drop(other);
            let places = Arc::new(Mutex::new(Vec::new()));
            let mut waiters = Vec::new();
            for i in 0..3 {
                let (slots, places) = (slots.clone(), places.clone());
                waiters.push(tokio::spawn(async move {
                    let slot = slots
                        .acquire(7, |ahead| lock(&places).push((i, ahead)))
                        .await
                        .unwrap();
                    (i, slot)
                }));
                tokio::task::yield_now().await;
            }
            assert_eq!(slots.load(7), (2, 3));
            assert_eq!(*lock(&places), [(0, 0), (1, 1), (2, 2)]);
            drop(a);
            let (first, _slot0) = waiters.remove(0).await.unwrap();
            assert_eq!(first, 0);
            // The line moved: each remaining waiter was told its new place.
            tokio::task::yield_now().await;
            assert!(lock(&places).contains(&(1, 0)), "{:?}", lock(&places));
            assert!(lock(&places).contains(&(2, 1)), "{:?}", lock(&places));
            drop(b);
            let (second, _slot1) = waiters.remove(0).await.unwrap();
            assert_eq!(second, 1);
            assert_eq!(slots.load(7), (2, 1));
        });
    }

    #[test]
    fn a_cancelled_wait_leaves_the_line_and_idle_users_are_forgotten() {
        run(async {
            let slots = Slots::new(1);
            let running = slots.acquire(1, |_| {}).await.unwrap();
            let told = Arc::new(AtomicUsize::new(usize::MAX));
            let t = told.clone();
            let waiting = tokio::spawn({
                let slots = slots.clone();
                async move {
                    let _ = slots.acquire(1, |a| t.store(a, Ordering::SeqCst)).await;
                }
            });
            tokio::task::yield_now().await;
            assert_eq!(told.load(Ordering::SeqCst), 0);
            assert_eq!(slots.load(1), (1, 1));
            waiting.abort();
            let _ = waiting.await;
            assert_eq!(slots.load(1), (1, 0), "the cancelled wait left");
            drop(running);
            assert_eq!(slots.users(), 0, "nothing running or waiting: forgotten");
        });
    }

    #[test]
    fn a_user_may_not_queue_without_end() {
        run(async {
            let slots = Slots::new(1);
            let _running = slots.acquire(1, |_| {}).await.unwrap();
            let mut waiters = Vec::new();
            for _ in 0..MAX_WAITING_PER_USER {
                let slots = slots.clone();
                waiters.push(tokio::spawn(async move {
                    let _ = slots.acquire(1, |_| {}).await;
                }));
            }
            tokio::task::yield_now().await;
            assert_eq!(slots.load(1), (1, MAX_WAITING_PER_USER));
            let refused = slots.acquire(1, |_| {}).await.err();
            assert_eq!(refused, Some(LineFull));
            assert!(refused
                .unwrap()
                .to_string()
                .contains("32 of your downloads"));
            for w in waiters {
                w.abort();
            }
        });
    }
}
