//! The application: what every adapter (SSH, HTTP) shares.

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::chat::Chat;
use crate::config::Config;
use crate::library::Library;
use crate::store::users::{self, KeyRecord, PendingKey, Removed};
use crate::store::{Store, StoreError};

/// Shared state of a running instance. Cheap to clone.
#[derive(Clone)]
pub struct App {
    /// The validated configuration this instance runs with.
    pub config: Arc<Config>,
    /// The database, reached through its own thread.
    pub store: Store,
    /// The local chat room and who is online.
    pub chat: Chat,
    /// Users' files on disk and in the catalog.
    pub library: Library,
    /// Shared files and users' libraries, as commands see them.
    pub catalog: Catalog,
    /// Users' keys and profiles, as commands see them.
    pub users: Users,
}

impl App {
    pub fn new(config: Config, store: Store) -> App {
        let chat = Chat::new(&config.domain, store.clone());
        let library = Library::new(&config.data_dir, store.clone(), config.library.clone());
        let catalog = Catalog::new(store.clone(), &config.domain)
            .with_max_remote_files_per_peer(config.federation.max_remote_files_per_peer);
        let users = Users {
            store: store.clone(),
        };
        App {
            config: Arc::new(config),
            store,
            chat,
            library,
            catalog,
            users,
        }
    }

    pub fn domain(&self) -> &str {
        &self.config.domain
    }
}

/// Users' keys and profiles: the one place commands reach them, so that remote profiles can
/// join here later. Cheap to clone.
#[derive(Clone)]
pub struct Users {
    /// The database, where users and keys live.
    store: Store,
}

impl Users {
    /// The local user with this nickname (any case): their id and the nick in display case.
    pub async fn by_nick(&self, nick: &str) -> Result<Option<(i64, String)>, StoreError> {
        let nick = nick.to_owned();
        self.store
            .call(move |conn| users::user_id_by_nick(conn, &nick))
            .await
    }

    /// The user's keys, and those waiting for confirmation at `now`.
    pub async fn keys(
        &self,
        user_id: i64,
        now: i64,
    ) -> Result<(Vec<KeyRecord>, Vec<PendingKey>), StoreError> {
        self.store
            .call(move |conn| {
                Ok((
                    users::list_keys(conn, user_id)?,
                    users::list_pending(conn, user_id, now)?,
                ))
            })
            .await
    }

    /// Records a key waiting for its holder to log in with it as `NICK+code`.
    pub async fn propose_key(
        &self,
        user_id: i64,
        fingerprint: &str,
        public_key: &str,
        code: &str,
        now: i64,
    ) -> Result<PendingKey, StoreError> {
        let (fp, key, code) = (
            fingerprint.to_owned(),
            public_key.to_owned(),
            code.to_owned(),
        );
        self.store
            .call(move |conn| users::propose_key(conn, user_id, &fp, &key, &code, now))
            .await
    }

    /// Removes one of the user's keys, or cancels a waiting one.
    pub async fn remove_key(
        &self,
        user_id: i64,
        fingerprint: &str,
        now: i64,
    ) -> Result<Removed, StoreError> {
        let fp = fingerprint.to_owned();
        self.store
            .call(move |conn| users::remove_key(conn, user_id, &fp, now))
            .await
    }
}

/// A user whose key has been verified in this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    /// The nickname as first claimed (display case).
    pub nick: String,
    /// SHA256 fingerprint of the key this session logged in with.
    pub fingerprint: String,
}

/// Resolves once the shutdown flag turns true (or its sender is gone).
pub async fn shutting_down(flag: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = flag.wait_for(|down| *down).await;
}
