//! The store: one SQLite database (WAL) owned by one dedicated thread.
//!
//! **Invariant:** no SQL runs on the async runtime. Callers send a closure to the store thread
//! with [`Store::call`] and await its answer; the thread runs jobs one after another on its
//! single connection, which is also the single writer SQLite wants.

pub mod chat;
pub mod fed;
pub mod files;
pub mod messages;
mod migrations;
pub mod peer_keys;
pub mod remote;
pub mod users;

use std::path::Path;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

pub use chat::{ChatKind, StoredLine};
pub use users::{AuthOutcome, ConfirmOutcome, KeyRecord};

/// Applies the schema migrations to a connection opened elsewhere (tools and benchmarks).
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrations::migrate(conn)
}

/// Jobs waiting for the store thread; senders wait when it is full (backpressure).
const QUEUE_DEPTH: usize = 256;
/// How long a statement waits for a lock held by another process (for example `sqlite3`).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store is closed")]
    Closed,
    /// The database's schema is newer than this binary knows.
    #[error("the database is at schema version {found}, newer than this rosewire ({known}); upgrade rosewire")]
    SchemaTooNew { found: usize, known: usize },
    #[error("cannot start the store thread: {0}")]
    Thread(String),
    /// A change to a user's keys that the rules refuse; `cmd/keys.rs` words it for the user.
    #[error("{0:?}")]
    Keys(KeyRefusal),
    /// The peer table holds `max` peers already.
    #[error("the peer table is full ({max} peers)")]
    TooManyPeers { max: i64 },
}

/// Why a change to a user's keys was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRefusal {
    /// The proposed key is one of the user's keys already.
    AlreadyYours { fingerprint: String },
    /// `waiting` keys wait for confirmation already: the most a user may have.
    TooManyPending { waiting: i64 },
    /// No key or waiting key of the user has this fingerprint.
    NotYours { fingerprint: String },
    /// Removing it would leave the user without a key.
    OnlyKey { fingerprint: String },
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A cheap, cloneable handle to the store thread.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
}

/// Owns the store thread; [`StoreThread::close`] drains the queue and closes the database.
pub struct StoreThread {
    thread: JoinHandle<()>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, migrates it, and starts its thread.
    pub fn open(path: &Path) -> Result<(Store, StoreThread), StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::migrate(&mut conn)?;
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("rosewire-store".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    // A panicking job fails its caller (its answer is dropped), not the store.
                    let run = std::panic::AssertUnwindSafe(|| job(&mut conn));
                    if std::panic::catch_unwind(run).is_err() {
                        tracing::error!("a database job panicked; the store carries on");
                    }
                }
                // Every handle is gone: fold the WAL back into the database and close.
                if let Err(e) = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
                    tracing::warn!("wal checkpoint on close failed: {e}");
                }
                match conn.close() {
                    Ok(()) => tracing::info!("database closed"),
                    Err((_, e)) => tracing::error!("database close failed: {e}"),
                }
            })
            .map_err(|e| StoreError::Thread(e.to_string()))?;
        Ok((Store { jobs: tx }, StoreThread { thread }))
    }

    /// Runs `f` on the store thread and returns its result.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

impl StoreThread {
    /// Waits until every [`Store`] handle is dropped and the database is closed.
    pub fn close(self) {
        if self.thread.join().is_err() {
            tracing::error!("the store thread panicked");
        }
    }
}

#[cfg(test)]
pub(crate) fn open_in_memory() -> Connection {
    let mut conn = Connection::open_in_memory().expect("in-memory database");
    migrations::migrate(&mut conn).expect("migrations apply");
    conn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_job_fails_its_caller_and_not_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (store, thread) = Store::open(&dir.path().join("db")).unwrap();
        let failed = store
            .call(|_| -> Result<(), StoreError> { panic!("deliberate") })
            .await;
        assert!(matches!(failed, Err(StoreError::Closed)));
        let n: i64 = store
            .call(|conn| Ok(conn.query_row("SELECT 40 + 2", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 42);
        drop(store);
        thread.close();
    }
}
