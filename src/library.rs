//! Users' libraries on disk and in the catalog.
//!
//! On disk, each user has `DATA_DIR/users/<id>/` holding `library/` (their uploads),
//! `downloads/` (what `/get` fetched for them) and `.partial/` (uploads in progress, invisible
//! to the user, on the same file system so a finished upload is renamed into place).
//! `.partial/` is emptied when the server starts ([`sweep_partials`]); while an upload
//! or a `/get` writes there, its bytes are reserved in the [`Ledger`].
//!
//! **Invariant:** a file is in the catalog only once it is complete in `library/`, with the
//! BLAKE3 hash of exactly its bytes.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::config::LibraryConfig;
use crate::quota::{EntrySlot, Ledger, OpenHandles, QuotaError, Reservation, UploadSlot};
use crate::store::{self, files::FileIdentity, Store, StoreError};
use crate::transfer::encoding::Outboards;
use crate::transfer::{FetchError, COPY_CHUNK};

/// Local files read per page when outboards are filled in at start.
const OUTBOARD_FILL_PAGE: usize = 500;

/// Where the outboards of shared files live, under the data directory (see
/// [`crate::transfer::encoding::Outboards`]).
pub const OUTBOARDS_DIR: &str = "outboards";

/// Reservations grow by this much at a time (or by 1/64 of the quota, if less), so an upload
/// of unknown size reserves as it goes, not the whole quota up front.
const RESERVE_CHUNK: u64 = 8 << 20;
/// Measurements a reservation makes before giving up while bytes keep being released under it.
const RESERVE_ATTEMPTS: usize = 3;

#[derive(Clone)]
pub struct Library {
    /// `DATA_DIR/users`.
    root: PathBuf,
    store: Store,
    /// Quota and file size bounds from the config.
    pub limits: LibraryConfig,
    /// Work in progress per user: reserved bytes, writable handles, entry counts.
    ledger: Ledger,
    /// The BLAKE3 trees of shared files, for sending them to other instances verified.
    pub outboards: Outboards,
    /// Resumable downloads being written now (`downloads/*.part`): one writer each.
    partials: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Library {
    pub fn new(data_dir: &std::path::Path, store: Store, limits: LibraryConfig) -> Library {
        Library {
            root: data_dir.join("users"),
            store,
            limits,
            ledger: Ledger::default(),
            outboards: Outboards::new(data_dir.join(OUTBOARDS_DIR)),
            partials: Arc::default(),
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

    /// Creates the user's folders (mode 0700) if missing. (Uploads left unfinished by a crash
    /// are cleared at start, by [`sweep_partials`], not here: another session of the
    /// user may be writing to `.partial/` now.)
    pub async fn prepare(&self, user_id: i64) -> std::io::Result<()> {
        let dirs = [
            self.library_dir(user_id),
            self.downloads_dir(user_id),
            self.partial_dir(user_id),
        ];
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::DirBuilderExt;
            for dir in &dirs {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Records a finished upload at `path` (relative to `library/`); `identity` is that of the
    /// handle renamed into place, which every download compares with the file it opens.
    pub async fn file_added(
        &self,
        user_id: i64,
        path: &str,
        size: u64,
        hash: &str,
        modified: i64,
        identity: FileIdentity,
    ) -> Result<(), StoreError> {
        let (at, id) = (path.to_owned(), hash.to_owned());
        self.store
            .call(move |conn| {
                store::files::upsert(conn, user_id, &at, size, &id, modified, Some(&identity))
            })
            .await?;
        self.make_outboard(user_id, path, size, hash);
        Ok(())
    }

    /// Makes the outboard of a file just added to `library/`, in the background, so the first
    /// request from another instance need not wait for it (it is made then if missing).
    fn make_outboard(&self, user_id: i64, path: &str, size: u64, hash: &str) {
        let Some(id) = crate::transfer::encoding::parse_id(hash) else {
            return;
        };
        let (outboards, source) = (self.outboards.clone(), self.library_dir(user_id).join(path));
        tokio::task::spawn_blocking(move || {
            // `make` refuses bytes that do not hash to the id (a file replaced meanwhile).
            let made = std::fs::File::open(&source)
                .map_err(|e| e.to_string())
                .and_then(|file| outboards.make(&id, size, file).map_err(|e| e.to_string()));
            if let Err(e) = made {
                tracing::debug!("no outboard made after an upload: {e}");
            }
        });
    }

    /// Removes the outboards of content that no local file has any more, and outboards left
    /// half made; returns how many went. Run at start, beside the sessions.
    pub async fn sweep_outboards(&self) -> Result<usize, StoreError> {
        let outboards = self.outboards.clone();
        let ids = tokio::task::spawn_blocking(move || outboards.list())
            .await
            .unwrap_or_default();
        let orphans = self
            .store
            .call(move |conn| store::files::hashes_without_local_file(conn, &ids))
            .await?;
        let outboards = self.outboards.clone();
        let removed = orphans.len();
        let _ = tokio::task::spawn_blocking(move || {
            for id in orphans {
                if let Some(id) = crate::transfer::encoding::parse_id(&id) {
                    outboards.forget(&id);
                }
            }
        })
        .await;
        Ok(removed)
    }

    /// Makes the outboards that local files lack (files uploaded before outboards were kept,
    /// or whose outboard was lost), one file at a time; returns how many were made. Run at
    /// start, beside the sessions: a file asked for meanwhile has its outboard made then.
    pub async fn fill_outboards(&self) -> Result<usize, StoreError> {
        let mut after = 0;
        let mut made = 0;
        loop {
            let page = self
                .store
                .call(move |conn| store::files::local_files_page(conn, after, OUTBOARD_FILL_PAGE))
                .await?;
            let Some(last) = page.last() else {
                return Ok(made);
            };
            after = last.row;
            let library = self.clone();
            made += tokio::task::spawn_blocking(move || {
                let mut made = 0;
                for f in page {
                    let Some(id) = crate::transfer::encoding::parse_id(&f.hash) else {
                        continue;
                    };
                    if library.outboards.has(&id, f.size) {
                        continue;
                    }
                    let source = library.library_dir(f.owner_id).join(&f.path);
                    // `make` refuses a file that no longer hashes to its id.
                    if let Ok(file) = std::fs::File::open(source) {
                        made += usize::from(library.outboards.make(&id, f.size, file).is_ok());
                    }
                }
                made
            })
            .await
            .unwrap_or(0);
        }
    }

    /// A file shared here whose content is `id` (hex BLAKE3), opened for sending to another
    /// instance through [`Library::open_download`], with its size and owner; `None` if no
    /// local file with that content is shared now.
    pub async fn open_shared_by_id(&self, id: &str) -> Result<Option<SharedHere>, FetchError> {
        let hash = id.to_owned();
        let Some((owner_id, path)) = self
            .store
            .call(move |conn| store::files::local_shared_by_hash(conn, &hash))
            .await?
        else {
            return Ok(None);
        };
        match self.open_download(owner_id, &path, id).await {
            Ok(opened) => {
                let size =
                    opened
                        .file
                        .metadata()
                        .map(|m| m.len())
                        .map_err(|source| FetchError::Io {
                            name: path.clone(),
                            source,
                        })?;
                Ok(Some(SharedHere {
                    opened,
                    size,
                    owner_id,
                    path,
                }))
            }
            Err(FetchError::NotShared { .. }) => Ok(None),
            Err(e) => Err(e),
        }
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

    /// Bytes counted against the user's quota, apart from reservations: the library (from the
    /// catalog) plus everything in `downloads/`. (What is in `.partial/` is reserved.)
    pub async fn usage(&self, user_id: i64) -> Result<u64, StoreError> {
        let library = self
            .store
            .call(move |conn| store::files::usage(conn, user_id))
            .await?;
        let downloads = self.downloads_dir(user_id);
        let downloaded = tokio::task::spawn_blocking(move || dir_size(&downloads))
            .await
            .unwrap_or(0);
        Ok(library + downloaded)
    }

    /// Reserves exactly `bytes` of the user's quota, or refuses if usage and other
    /// reservations leave less free.
    pub async fn reserve(&self, user_id: i64, bytes: u64) -> Result<Reservation, QuotaError> {
        let mut r = self.ledger.reservation(user_id);
        self.grow_within(&mut r, bytes, bytes).await?;
        Ok(r)
    }

    /// An empty reservation for `user_id`, to [`Library::grow`] as bytes are written.
    pub fn reservation(&self, user_id: i64) -> Reservation {
        self.ledger.reservation(user_id)
    }

    /// Grows `r` to cover `to` bytes, taking a chunk more if it fits. A reservation that
    /// covers `to` already costs nothing (no measurement).
    pub async fn grow(&self, r: &mut Reservation, to: u64) -> Result<(), QuotaError> {
        let chunk = RESERVE_CHUNK.min(self.limits.quota_bytes / 64).max(1);
        let want = to.div_ceil(chunk).saturating_mul(chunk);
        self.grow_within(r, to, want).await
    }

    /// Grows `r` to at least `to` bytes, and up to `want` if free.
    async fn grow_within(&self, r: &mut Reservation, to: u64, want: u64) -> Result<(), QuotaError> {
        if to <= r.bytes() {
            return Ok(());
        }
        let quota = self.limits.quota_bytes;
        let mut refused = None;
        for _ in 0..RESERVE_ATTEMPTS {
            let before = self.ledger.released(r.user_id());
            let used = self
                .usage(r.user_id())
                .await
                .map_err(|e| QuotaError::Usage(e.to_string()))?;
            match self.ledger.try_grow(r, to, want, used, before, quota) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let retry = e.retry;
                    refused = Some(e);
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(QuotaError::Over {
            allowed: quota,
            used: refused.map_or(0, |e| e.used),
            adding: to,
        })
    }

    /// A writable handle on `target` (whose current size is `replaced`, 0 if new), counted
    /// against `library.max_uploads_per_user`.
    pub fn open_upload(
        &self,
        user_id: i64,
        target: &std::path::Path,
        replaced: u64,
    ) -> Result<UploadSlot, QuotaError> {
        self.ledger
            .open_upload(user_id, self.limits.max_uploads_per_user, target, replaced)
    }

    /// What one SFTP session holds against `library.max_open_files_per_user` and
    /// `library.max_open_files`.
    pub fn open_handles(&self, user_id: i64) -> OpenHandles {
        OpenHandles::new(self.ledger.clone(), user_id)
    }

    /// Room for one more file or folder, counting the user's entries first if not yet done.
    pub async fn entry_slot(&self, user_id: i64) -> Result<EntrySlot, QuotaError> {
        if self.ledger.entries(user_id).is_none() {
            let dirs = [self.library_dir(user_id), self.downloads_dir(user_id)];
            let n =
                tokio::task::spawn_blocking(move || dirs.iter().map(|d| count_entries(d)).sum())
                    .await
                    .map_err(|e| QuotaError::Usage(e.to_string()))?;
            self.ledger.set_entries(user_id, n);
        }
        self.ledger.entry_slot(user_id, self.limits.max_entries)
    }

    /// The right to write the resumable download at `path`, unless another transfer holds it.
    pub fn claim_partial(&self, path: PathBuf) -> Option<PartialClaim> {
        let mut held = self.partials.lock().unwrap_or_else(|e| e.into_inner());
        held.insert(path.clone()).then(|| PartialClaim {
            partials: self.partials.clone(),
            path,
        })
    }

    /// A file or folder was made in the user's tree.
    pub fn entry_added(&self, user_id: i64) {
        self.ledger.entry_added(user_id);
    }

    /// A file or folder was removed from the user's tree.
    pub fn entry_removed(&self, user_id: i64) {
        self.ledger.entry_removed(user_id);
    }
}

/// Empties every user's `.partial/` under `data_dir`: what a crash left there can never
/// complete. Run at start, before any session. Blocking; returns the files removed and the
/// bytes reclaimed.
pub fn sweep_partials(data_dir: &std::path::Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let Ok(users) = std::fs::read_dir(data_dir.join("users")) else {
        return (0, 0);
    };
    for user in users.flatten() {
        let Ok(entries) = std::fs::read_dir(user.path().join(".partial")) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let removed = match entry.file_type() {
                Ok(t) if t.is_dir() => {
                    let size = dir_size(&path);
                    std::fs::remove_dir_all(&path).map(|()| size)
                }
                _ => {
                    let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    std::fs::remove_file(&path).map(|()| size)
                }
            };
            match removed {
                Ok(size) => {
                    files += 1;
                    bytes += size;
                }
                Err(e) => tracing::warn!(path = %path.display(), "cannot remove: {e}"),
            }
        }
    }
    (files, bytes)
}

/// Files and folders under `dir`, walked without recursion (0 if it is missing).
fn count_entries(dir: &std::path::Path) -> u64 {
    let mut count = 0;
    let mut todo = vec![dir.to_owned()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            count += 1;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(entry.path());
            }
        }
    }
    count
}

impl Library {
    /// Opens the shared file at `path` in `owner_id`'s library, expected to hold the bytes
    /// of id `hash`, for sending. Every download, into `downloads/` or to an exec channel,
    /// starts here, and nothing is sent unless this succeeds:
    ///
    /// 1. the file must be shared now: it is looked up again in the catalog by owner and
    ///    path, and must still be shared with the same content (an old search result of a
    ///    file since unshared, replaced, renamed or removed is refused);
    /// 2. the opened handle must be the catalogued file: its device, inode, size and
    ///    modification time (`fstat` of the open handle) must be those recorded when it was
    ///    catalogued. A file that differs (replaced on disk, or catalogued before identities
    ///    were recorded) is hashed in full from the open handle first: refused if the hash
    ///    differs, sent (and its identity recorded) if it matches.
    ///
    /// The hash is still checked while the bytes are copied or sent, as a last guard against
    /// an edit in place during the transfer.
    pub async fn open_download(
        &self,
        owner_id: i64,
        path: &str,
        hash: &str,
    ) -> Result<Opened, FetchError> {
        let name = path.rsplit('/').next().unwrap_or(path).to_owned();
        let at = path.to_owned();
        let current = self
            .store
            .call(move |conn| store::files::shared_at(conn, owner_id, &at))
            .await?;
        let (record, identity) = match current {
            Some((record, identity)) if record.hash == hash => (record, identity),
            _ => return Err(FetchError::NotShared { name }),
        };
        let source = self.library_dir(owner_id).join(path);
        let expected = (record.size, record.hash.clone());
        let (file, proven) = blocking(&name.clone(), move || {
            open_checked(&source, &name, expected, identity)
        })
        .await
        .inspect_err(|e| {
            if let FetchError::Replaced { .. } = e {
                tracing::warn!(owner = owner_id, path, "download refused: {e}");
            }
        })?;
        if let Some(proven) = proven {
            // The bytes were hashed: remember this file, so the next download need not.
            let (id, hash) = (record.id, record.hash);
            if let Err(e) = self
                .store
                .call(move |conn| store::files::record_identity(conn, id, &hash, &proven))
                .await
            {
                tracing::warn!(name = %record.name, "cannot record the file's identity: {e}");
            }
        }
        Ok(Opened { file })
    }
}

/// A local shared file found by its content ([`Library::open_shared_by_id`]).
#[derive(Debug)]
pub struct SharedHere {
    pub opened: Opened,
    pub size: u64,
    /// Whose it is, and where in their `library/`.
    pub owner_id: i64,
    pub path: String,
}

/// A resumable download's file, written by one transfer at a time; given back when dropped.
pub struct PartialClaim {
    partials: Arc<Mutex<HashSet<PathBuf>>>,
    path: PathBuf,
}

impl Drop for PartialClaim {
    fn drop(&mut self) {
        self.partials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.path);
    }
}

/// A shared file opened by [`Library::open_download`] and proven to be the catalogued one;
/// only that function makes one.
#[derive(Debug)]
pub struct Opened {
    /// The open handle: read from it, never from the path again.
    file: std::fs::File,
}

impl Opened {
    /// The open handle, positioned at the start of the file.
    pub fn into_file(self) -> std::fs::File {
        self.file
    }

    /// A file taken as proven, for tests of what reads it.
    #[cfg(test)]
    pub(crate) fn unchecked(file: std::fs::File) -> Opened {
        Opened { file }
    }
}

/// Runs blocking file work off the async runtime; a failed task is an I/O error on `name`.
async fn blocking<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> Result<T, FetchError> + Send + 'static,
) -> Result<T, FetchError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| FetchError::Io {
            name: name.to_owned(),
            source: std::io::Error::other(e),
        })?
}

/// Opens `source` (the file `name`) and proves it holds `expected`'s bytes, a size and a hex
/// BLAKE3 hash (see [`Library::open_download`]). Returns the handle, positioned at the start,
/// and the identity to record if it had to be proven by hashing.
fn open_checked(
    source: &std::path::Path,
    name: &str,
    expected: (u64, String),
    recorded: Option<FileIdentity>,
) -> Result<(std::fs::File, Option<FileIdentity>), FetchError> {
    use std::io::{Read, Seek};
    let (size, hash) = expected;
    let io = |source: std::io::Error| FetchError::Io {
        name: name.to_owned(),
        source,
    };
    // No symlink is ever created in a library; were one there, it would lead to another
    // inode, which is hashed before a byte of it is sent.
    let mut file = match std::fs::File::open(source) {
        Ok(file) => file,
        // Gone (removed, or renamed away) since the catalog was read.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FetchError::NotShared {
                name: name.to_owned(),
            })
        }
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    let replaced = || FetchError::Replaced {
        name: name.to_owned(),
        hash: hash.clone(),
    };
    if !meta.is_file() {
        return Err(replaced());
    }
    let identity = FileIdentity::of(&meta);
    if recorded == Some(identity) {
        return Ok((file, None));
    }
    if identity.size != size {
        return Err(replaced());
    }
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; COPY_CHUNK];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    if hasher.finalize().to_hex().as_str() != hash {
        return Err(replaced());
    }
    file.rewind().map_err(io)?;
    Ok((file, Some(identity)))
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

/// Sizes for people: `0 B`, `999 B`, `1.5 KiB`, `10.0 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Shell-style wildcards: `*` any run of characters, `?` one character. A pattern with a `/`
/// is matched against the whole path (and `*` stops at `/`); otherwise against the file name.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let (pattern, text) = if pattern.contains('/') {
        (pattern, path)
    } else {
        (pattern, path.rsplit('/').next().unwrap_or(path))
    };
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point (linear in practice, no recursion).
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' && t[ti] != '/' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star.filter(|&(_, st)| t[st] != '/') {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether `pattern` has wildcards (otherwise it names one file, by path or name).
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outboards_are_made_after_an_upload_filled_in_if_lost_and_swept_once_no_file_has_their_content(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _thread) = Store::open(&dir.path().join("db")).unwrap();
        let library = Library::new(dir.path(), store.clone(), LibraryConfig::default());
        let kept = vec![3u8; 40_000];
        let gone = vec![4u8; 40_000];
        let (kept_id, gone_id) = (blake3::hash(&kept), blake3::hash(&gone));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            store
                .call(|conn| store::users::authenticate(conn, "alice", "SHA256:a", "k", 0))
                .await
                .unwrap();
            library.prepare(1).await.unwrap();
            let path = library.library_dir(1).join("kept.bin");
            std::fs::write(&path, &kept).unwrap();
            let identity = FileIdentity::of(&std::fs::metadata(&path).unwrap());
            let hex = kept_id.to_hex().to_string();
            library
                .file_added(1, "kept.bin", 40_000, &hex, 0, identity)
                .await
                .unwrap();
        });
        let folder = dir.path().join(OUTBOARDS_DIR);
        assert!(crate::transfer::encoding::tests::wait_for(|| folder
            .join(kept_id.to_hex().as_str())
            .is_file()));
        // Lost: filled in again from the file.
        std::fs::remove_file(folder.join(kept_id.to_hex().as_str())).unwrap();
        assert_eq!(rt.block_on(library.fill_outboards()).unwrap(), 1);
        assert_eq!(
            rt.block_on(library.fill_outboards()).unwrap(),
            0,
            "made once"
        );
        library.outboards.make(&gone_id, 40_000, &gone[..]).unwrap();
        std::fs::write(folder.join(".make-left-by-a-crash"), b"x").unwrap();
        assert_eq!(rt.block_on(library.sweep_outboards()).unwrap(), 1);
        let mut left: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [kept_id.to_hex().to_string()]);
    }

    #[test]
    fn human_sizes() {
        let check = |n, s: &str| assert_eq!(human_size(n), s);
        check(0, "0 B");
        check(1, "1 B");
        check(1023, "1023 B");
        check(1536, "1.5 KiB");
        check(10 << 20, "10.0 MiB");
        check(3 << 40, "3.0 TiB");
    }

    /// A file with `bytes` in a temp dir, its expected size and hash, and its identity.
    fn catalogued(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, (u64, String), FileIdentity) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("song.flac");
        std::fs::write(&path, bytes).unwrap();
        // An old modification time, so an edit in place is seen whatever the clock's grain.
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30))
            .unwrap();
        let identity = FileIdentity::of(&file.metadata().unwrap());
        let expected = (bytes.len() as u64, blake3::hash(bytes).to_hex().to_string());
        (dir, path, expected, identity)
    }

    fn read_all(mut file: std::fs::File) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        file.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn the_catalogued_file_opens_without_rehashing() {
        let (_dir, path, d, identity) = catalogued(b"shared bytes");
        let (file, proven) = open_checked(&path, "song.flac", d.clone(), Some(identity)).unwrap();
        assert_eq!(proven, None);
        assert_eq!(read_all(file), b"shared bytes");
    }

    #[test]
    fn a_file_edited_in_place_is_refused_before_reading() {
        let (_dir, path, d, identity) = catalogued(b"shared bytes");
        std::fs::write(&path, b"secret bytes").unwrap();
        let err = open_checked(&path, "song.flac", d.clone(), Some(identity)).unwrap_err();
        assert!(matches!(err, FetchError::Replaced { .. }), "{err}");
        assert!(err.to_string().contains("share it again"), "{err}");
    }

    #[test]
    fn a_replaced_file_with_the_same_bytes_is_proven_by_hash() {
        let (dir, path, d, identity) = catalogued(b"shared bytes");
        // A new upload of the same content: a new inode renamed over the old one.
        let other = dir.path().join("new");
        std::fs::write(&other, b"shared bytes").unwrap();
        std::fs::rename(&other, &path).unwrap();
        let (file, proven) = open_checked(&path, "song.flac", d.clone(), Some(identity)).unwrap();
        assert!(proven.is_some_and(|p| p != identity));
        assert_eq!(read_all(file), b"shared bytes", "read from the start");
        // A file catalogued before identities were recorded, likewise.
        let (file, proven) = open_checked(&path, "song.flac", d.clone(), None).unwrap();
        assert!(proven.is_some());
        assert_eq!(read_all(file), b"shared bytes");
    }

    #[test]
    fn a_missing_file_is_no_longer_shared() {
        let (_dir, path, d, identity) = catalogued(b"x");
        std::fs::remove_file(&path).unwrap();
        let err = open_checked(&path, "song.flac", d.clone(), Some(identity)).unwrap_err();
        assert!(matches!(err, FetchError::NotShared { .. }), "{err}");
    }

    #[test]
    fn globs() {
        let check =
            |p: &str, path: &str, want: bool| assert_eq!(glob_match(p, path), want, "{p} ~ {path}");
        check("*.flac", "Jazz/So What.flac", true);
        check("*.flac", "Jazz/So What.mp3", false);
        check("so*", "Jazz/so what.flac", true);
        check("?.txt", "a.txt", true);
        check("?.txt", "ab.txt", false);
        check("Jazz/*.flac", "Jazz/a.flac", true);
        check("Jazz/*.flac", "Jazz/x/a.flac", false);
        check("*", "anything", true);
        check("a*b*c", "aXXbYYc", true);
        check("a*b*c", "aXXbYY", false);
    }
}
