//! Users' libraries on disk and in the catalog.
//!
//! On disk, each user has `DATA_DIR/users/<id>/` holding `library/` (their uploads),
//! `downloads/` (what `/get` fetched for them) and `.partial/` (uploads in progress, invisible
//! to the user, on the same file system so a finished upload is renamed into place).
//!
//! **Invariant:** a file is in the catalog only once it is complete in `library/`, with the
//! BLAKE3 hash of exactly its bytes.

use std::path::PathBuf;

use crate::config::LibraryConfig;
use crate::store::{self, files::FileRecord, Store, StoreError};

#[derive(Clone)]
pub struct Library {
    /// `DATA_DIR/users`.
    root: PathBuf,
    store: Store,
    /// Quota and file size bounds from the config.
    pub limits: LibraryConfig,
}

impl Library {
    pub fn new(data_dir: &std::path::Path, store: Store, limits: LibraryConfig) -> Library {
        Library {
            root: data_dir.join("users"),
            store,
            limits,
        }
    }

    pub fn user_dir(&self, user_id: i64) -> PathBuf {
        self.root.join(user_id.to_string())
    }

    pub fn library_dir(&self, user_id: i64) -> PathBuf {
        self.user_dir(user_id).join("library")
    }

    pub fn downloads_dir(&self, user_id: i64) -> PathBuf {
        self.user_dir(user_id).join("downloads")
    }

    pub fn partial_dir(&self, user_id: i64) -> PathBuf {
        self.user_dir(user_id).join(".partial")
    }

    /// Creates the user's folders (mode 0700) if missing, and clears uploads left unfinished
    /// by an earlier crash.
    pub async fn prepare(&self, user_id: i64) -> std::io::Result<()> {
        let dirs = [
            self.library_dir(user_id),
            self.downloads_dir(user_id),
            self.partial_dir(user_id),
        ];
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::DirBuilderExt;
            for dir in &dirs {
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Records a finished upload at `path` (relative to `library/`).
    pub async fn file_added(&self, user_id: i64, path: &str, size: u64, hash: &str, modified: i64) -> Result<(), StoreError> {
        let (path, hash) = (path.to_owned(), hash.to_owned());
        self.store
            .call(move |conn| store::files::upsert(conn, user_id, &path, size, &hash, modified))
            .await
            .map(|_| ())
    }

    /// Forgets a file removed from `library/`.
    pub async fn file_removed(&self, user_id: i64, path: &str) -> Result<(), StoreError> {
        let path = path.to_owned();
        self.store
            .call(move |conn| store::files::remove(conn, user_id, &path))
            .await
            .map(|_| ())
    }

    /// Follows a rename of a file or folder inside `library/`.
    pub async fn renamed(&self, user_id: i64, from: &str, to: &str) -> Result<(), StoreError> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.store
            .call(move |conn| store::files::rename(conn, user_id, &from, &to))
            .await
    }

    /// The user's catalogued files.
    pub async fn files(&self, user_id: i64) -> Result<Vec<FileRecord>, StoreError> {
        self.store.call(move |conn| store::files::list(conn, user_id)).await
    }

    /// Bytes counted against the user's quota: the library (from the catalog) plus
    /// everything in `downloads/`.
    pub async fn usage(&self, user_id: i64) -> Result<u64, StoreError> {
        let library = self.store.call(move |conn| store::files::usage(conn, user_id)).await?;
        let downloads = self.downloads_dir(user_id);
        let downloaded = tokio::task::spawn_blocking(move || dir_size(&downloads))
            .await
            .unwrap_or(0);
        Ok(library + downloaded)
    }
}

/// Total size of the regular files under `dir` (0 if it is missing).
fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
