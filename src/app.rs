//! The application: what every adapter (SSH, HTTP) shares.

use std::sync::Arc;

use crate::chat::Chat;
use crate::config::Config;
use crate::library::Library;
use crate::store::Store;

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
}

impl App {
    pub fn new(config: Config, store: Store) -> App {
        let chat = Chat::new(&config.domain, store.clone());
        let library = Library::new(&config.data_dir, store.clone(), config.library.clone());
        App {
            config: Arc::new(config),
            store,
            chat,
            library,
        }
    }

    pub fn domain(&self) -> &str {
        &self.config.domain
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
