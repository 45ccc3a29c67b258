//! An upload in progress: a temporary file in `.partial/`, hashed as the bytes arrive, renamed
//! into `library/` only when closed complete.
//!
//! **Invariant:** the temporary file is removed unless [`Upload::finish`] renamed it into
//! place: on a failed write (full disk, quota), on a failed close, and on drop (a client cut
//! off mid-upload drops its session's handles).
//!
//! Opening an existing file for writing without truncating it copies nothing: the copy into
//! the temporary file is made at the first write (or size change), so an open that never
//! writes costs no disk. Quota bytes are reserved by the caller before each write
//! ([`Upload::end_of_write`] says how long the file will be).

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::quota::QuotaError;

/// Chunk size for copying an existing file into the temporary one (resume) and for rehashing.
const COPY_CHUNK: usize = 256 * 1024;
/// Bytes written between two background flushes to disk: most of an upload reaches the disk
/// while it arrives, so the sync at close has little left to do.
const EARLY_SYNC_BYTES: u64 = 32 << 20;
/// Attempts at finding an unused temporary file name before giving up.
const TEMP_NAME_ATTEMPTS: u32 = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("file too large: {size} bytes, the maximum file size is {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error("disk full: upload of {0} abandoned, nothing was changed")]
    DiskFull(String),
    #[error("upload of {path} failed: {reason}")]
    Io { path: String, reason: String },
    #[error("upload of {path} abandoned earlier: {reason}")]
    Abandoned { path: String, reason: String },
}

/// A finished upload, now in place.
#[derive(Debug, Clone)]
pub struct Finished {
    pub size: u64,
    /// Hex BLAKE3 of the content.
    pub hash: String,
    /// Modification time (unix seconds).
    pub modified: i64,
    /// Where the file is on disk, from the handle renamed into place (for the catalog).
    pub identity: crate::store::files::FileIdentity,
}

pub struct Upload {
    /// The temporary file; shared with the blocking task doing a write.
    file: Arc<File>,
    /// Its path in `.partial/`.
    temp: PathBuf,
    /// Where it goes when complete.
    target: PathBuf,
    /// The existing file this upload changes, until its content is copied into the temporary
    /// file (at the first write): reads are served from it meanwhile.
    source: Option<Arc<File>>,
    /// The virtual path, for messages and logs.
    pub shown: String,
    /// Hash of bytes `0..hashed`; `None` while a write holds it, or once lost.
    hasher: Option<blake3::Hasher>,
    hashed: u64,
    /// A write arrived out of order: the hash is recomputed from the file at close.
    dirty: bool,
    /// Current length of the file.
    len: u64,
    /// Opened with APPEND: every write goes to the end, whatever its offset.
    append: bool,
    /// `library.max_file_bytes`.
    max_file_bytes: u64,
    /// Times set by the client (fsetstat), applied at close.
    times: Option<(u32, u32)>,
    /// Why this upload can no longer complete; close reports it.
    failed: Option<UploadError>,
    /// The temporary file was renamed into place: nothing to clean up.
    done: bool,
    /// Length when the last background flush started.
    synced: u64,
    /// The background flush in progress, if any.
    syncing: Option<tokio::task::JoinHandle<()>>,
}

impl Upload {
    /// Creates a temporary file in `partial_dir` for an upload to `target`. With `resume`, the
    /// upload starts as the existing content of `target` (copied at the first write); one
    /// larger than `max_file_bytes` is refused. Blocking.
    pub fn create(
        partial_dir: &Path,
        target: PathBuf,
        shown: String,
        max_file_bytes: u64,
        resume: bool,
        append: bool,
    ) -> Result<Upload, UploadError> {
        let source = if resume {
            let source = File::open(&target).map_err(|e| io_error(&shown, e))?;
            let len = source.metadata().map_err(|e| io_error(&shown, e))?.len();
            check_size(len, max_file_bytes)?;
            Some((source, len))
        } else {
            None
        };
        let (file, temp) = create_temp(partial_dir).map_err(|e| io_error(&shown, e))?;
        let mut upload = Upload::empty(file, temp, target, shown, max_file_bytes, append);
        if let Some((source, len)) = source {
            upload.source = Some(Arc::new(source));
            upload.len = len;
            upload.hasher = None;
        }
        Ok(upload)
    }

    /// Copies the existing content into the temporary file, hashing it, if not done yet.
    /// The caller has reserved [`Upload::len`] bytes.
    async fn materialize(&mut self) -> Result<(), UploadError> {
        let Some(source) = self.source.take() else {
            return Ok(());
        };
        let file = self.file.clone();
        let copied = tokio::task::spawn_blocking(move || copy_into(&source, &file)).await;
        match copied {
            Ok(Ok((len, hash))) => {
                self.len = len;
                self.hashed = len;
                self.hasher = Some(hash);
                Ok(())
            }
            Ok(Err(e)) => Err(self.fail_io(e)),
            Err(e) => Err(self.fail_io(std::io::Error::other(e.to_string()))),
        }
    }

    /// A new, empty upload into the temporary `file` at `temp`.
    fn empty(
        file: File,
        temp: PathBuf,
        target: PathBuf,
        shown: String,
        max_file_bytes: u64,
        append: bool,
    ) -> Upload {
        Upload {
            file: Arc::new(file),
            temp,
            target,
            source: None,
            shown,
            hasher: Some(blake3::Hasher::new()),
            hashed: 0,
            dirty: false,
            len: 0,
            append,
            max_file_bytes,
            times: None,
            failed: None,
            done: false,
            synced: 0,
            syncing: None,
        }
    }

    #[cfg(test)]
    fn from_parts(file: File, temp: PathBuf, target: PathBuf, max_file_bytes: u64) -> Upload {
        Upload::empty(
            file,
            temp,
            target,
            "/library/test".into(),
            max_file_bytes,
            false,
        )
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Where the upload goes when complete.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Whether the upload differs from the file it opened (always, for a new file).
    pub fn changed(&self) -> bool {
        self.source.is_none()
    }

    /// The length of the file after writing `len` bytes at `offset`.
    pub fn end_of_write(&self, offset: u64, len: usize) -> u64 {
        let offset = if self.append { self.len } else { offset };
        self.len.max(offset.saturating_add(len as u64))
    }

    /// Abandons the upload for `e` (a write the quota refused); returns `e`.
    pub fn refuse(&mut self, e: UploadError) -> UploadError {
        self.fail(e)
    }

    /// Writes `data` at `offset`, hashing it if it continues the bytes hashed so far.
    pub async fn write(&mut self, offset: u64, data: Vec<u8>) -> Result<(), UploadError> {
        if let Some(e) = &self.failed {
            return Err(self.abandoned(e));
        }
        let new_len = self.end_of_write(offset, data.len());
        if let Err(e) = check_size(new_len, self.max_file_bytes) {
            return Err(self.fail(e));
        }
        self.materialize().await?;
        let offset = if self.append { self.len } else { offset };
        let hasher = if !self.dirty && offset == self.hashed {
            self.hasher.take()
        } else {
            self.dirty = true;
            None
        };
        let file = self.file.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let written = file.write_all_at(&data, offset);
            let hasher = hasher.map(|mut h| {
                if written.is_ok() {
                    h.update(&data);
                }
                h
            });
            (written, hasher, data.len() as u64)
        })
        .await;
        match joined {
            Ok((Ok(()), hasher, n)) => {
                if let Some(h) = hasher {
                    self.hasher = Some(h);
                    self.hashed += n;
                }
                self.len = new_len;
                self.flush_early();
                Ok(())
            }
            Ok((Err(e), _, _)) => Err(self.fail_io(e)),
            Err(e) => Err(self.fail_io(std::io::Error::other(e.to_string()))),
        }
    }

    /// Starts flushing what was written to disk in the background, every [`EARLY_SYNC_BYTES`].
    /// Errors are left to the sync at close, which reports them.
    fn flush_early(&mut self) {
        let busy = self.syncing.as_ref().is_some_and(|h| !h.is_finished());
        if busy || self.len.saturating_sub(self.synced) < EARLY_SYNC_BYTES {
            return;
        }
        self.synced = self.len;
        let file = self.file.clone();
        self.syncing = Some(tokio::task::spawn_blocking(move || {
            let _ = file.sync_data();
        }));
    }

    /// Reads up to `len` bytes at `offset` of what was uploaded so far (clients that open
    /// for reading and writing).
    pub async fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let file = self.source.as_ref().unwrap_or(&self.file);
        read_at(file.clone(), offset, len).await
    }

    /// Truncates or extends the file (fsetstat with a size).
    pub async fn set_len(&mut self, len: u64) -> Result<(), UploadError> {
        if let Some(e) = &self.failed {
            return Err(self.abandoned(e));
        }
        if let Err(e) = check_size(len, self.max_file_bytes) {
            return Err(self.fail(e));
        }
        self.materialize().await?;
        let file = self.file.clone();
        match tokio::task::spawn_blocking(move || file.set_len(len)).await {
            Ok(Ok(())) => {
                if len != self.hashed {
                    self.dirty = true;
                }
                self.len = len;
                Ok(())
            }
            Ok(Err(e)) => Err(self.fail_io(e)),
            Err(e) => Err(self.fail_io(std::io::Error::other(e.to_string()))),
        }
    }

    /// Remembers access and modification times to give the file at close.
    pub fn set_times(&mut self, atime: u32, mtime: u32) {
        self.times = Some((atime, mtime));
    }

    /// Completes the upload: makes the hash whole, syncs, and renames the file into place.
    /// `None` when nothing was written to an existing file (it is left as it was). On error
    /// the temporary file is gone.
    pub async fn finish(mut self) -> Result<Option<Finished>, UploadError> {
        if let Some(e) = &self.failed {
            return Err(self.abandoned(e));
        }
        if !self.changed() {
            return Ok(None);
        }
        if let Some(flush) = self.syncing.take() {
            let _ = flush.await;
        }
        let shown = self.shown.clone();
        // On error `self` drops in the blocking task, removing the temporary file.
        match tokio::task::spawn_blocking(move || self.finish_blocking()).await {
            Ok(Ok(finished)) => Ok(Some(finished)),
            Ok(Err(e)) => Err(io_error(&shown, e)),
            Err(e) => Err(io_error(&shown, std::io::Error::other(e.to_string()))),
        }
    }

    fn finish_blocking(&mut self) -> std::io::Result<Finished> {
        let hash = match (self.dirty, self.hasher.take()) {
            (false, Some(h)) if self.hashed == self.len => h.finalize(),
            _ => self.rehash()?,
        };
        if let Some((atime, mtime)) = self.times {
            let at = |s: u32| UNIX_EPOCH + Duration::from_secs(u64::from(s));
            self.file.set_times(
                std::fs::FileTimes::new()
                    .set_accessed(at(atime))
                    .set_modified(at(mtime)),
            )?;
        }
        self.file.sync_all()?;
        let meta = self.file.metadata()?;
        std::fs::rename(&self.temp, &self.target)?;
        self.done = true;
        if let Some(dir) = self.target.parent() {
            // Make the rename itself durable; a failure here changes nothing for the user.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(Finished {
            size: meta.len(),
            hash: hash.to_hex().to_string(),
            modified: meta.mtime(),
            identity: crate::store::files::FileIdentity::of(&meta),
        })
    }

    /// Hashes the temporary file from the start: the one case that reads the upload again.
    fn rehash(&self) -> std::io::Result<blake3::Hash> {
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut offset = 0;
        loop {
            let n = self.file.read_at(&mut buf, offset)?;
            if n == 0 {
                return Ok(hasher.finalize());
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
    }

    fn abandoned(&self, why: &UploadError) -> UploadError {
        UploadError::Abandoned {
            path: self.shown.clone(),
            reason: why.to_string(),
        }
    }

    /// Marks the upload failed and frees its disk space at once.
    fn fail(&mut self, e: UploadError) -> UploadError {
        self.failed = Some(e.clone());
        let _ = self.file.set_len(0);
        let _ = std::fs::remove_file(&self.temp);
        e
    }

    fn fail_io(&mut self, e: std::io::Error) -> UploadError {
        let e = io_error(&self.shown, e);
        self.fail(e)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Whether a file of `len` bytes is allowed.
fn check_size(len: u64, max: u64) -> Result<(), UploadError> {
    if len > max {
        return Err(UploadError::TooLarge { size: len, max });
    }
    Ok(())
}

/// Copies `source` into the empty `file`, returning its length and hasher. Holes in a sparse
/// source are written out: the caller reserved its full length.
fn copy_into(source: &File, file: &File) -> std::io::Result<(u64, blake3::Hasher)> {
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut hasher = blake3::Hasher::new();
    let mut len = 0u64;
    loop {
        let n = match source.read_at(&mut buf, len) {
            Ok(0) => return Ok((len, hasher)),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        file.write_all_at(&buf[..n], len)?;
        hasher.update(&buf[..n]);
        len += n as u64;
    }
}

fn io_error(shown: &str, e: std::io::Error) -> UploadError {
    if e.kind() == ErrorKind::StorageFull {
        UploadError::DiskFull(shown.to_owned())
    } else {
        UploadError::Io {
            path: shown.to_owned(),
            reason: e.to_string(),
        }
    }
}

/// A new, empty, private file with an unused random name in `dir`.
fn create_temp(dir: &Path) -> std::io::Result<(File, PathBuf)> {
    let mut last = None;
    for _ in 0..TEMP_NAME_ATTEMPTS {
        let path = dir.join(format!("upload-{:016x}.part", rand::random::<u64>()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary file name")))
}

/// Reads up to `len` bytes at `offset` (fewer only at the end of the file), off the runtime.
pub async fn read_at(file: Arc<File>, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// Seconds since the epoch, clamped into SFTP's 32-bit field.
pub fn unix_secs(t: SystemTime) -> u32 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: u64 = 1 << 20;

    fn upload(dir: &Path, max_file_bytes: u64) -> Upload {
        let partial = dir.join(".partial");
        std::fs::create_dir_all(&partial).unwrap();
        Upload::create(
            &partial,
            dir.join("target"),
            "/library/target".into(),
            max_file_bytes,
            false,
            false,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn in_order_writes_are_hashed_as_they_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let mut up = upload(dir.path(), ROOMY);
        up.write(0, b"hello ".to_vec()).await.unwrap();
        up.write(6, b"world".to_vec()).await.unwrap();
        assert!(!up.dirty);
        let done = up.finish().await.unwrap().unwrap();
        assert_eq!(done.hash, blake3::hash(b"hello world").to_hex().to_string());
        assert_eq!(
            std::fs::read(dir.path().join("target")).unwrap(),
            b"hello world"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join(".partial"))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn out_of_order_writes_are_rehashed_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let mut up = upload(dir.path(), ROOMY);
        up.write(6, b"world".to_vec()).await.unwrap();
        up.write(0, b"hello ".to_vec()).await.unwrap();
        assert!(up.dirty);
        let done = up.finish().await.unwrap().unwrap();
        assert_eq!(done.hash, blake3::hash(b"hello world").to_hex().to_string());
    }

    #[tokio::test]
    async fn a_dropped_upload_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut up = upload(dir.path(), ROOMY);
        up.write(0, vec![7; 1000]).await.unwrap();
        drop(up);
        assert_eq!(
            std::fs::read_dir(dir.path().join(".partial"))
                .unwrap()
                .count(),
            0
        );
        assert!(!dir.path().join("target").exists());
    }

    #[tokio::test]
    async fn an_oversized_write_abandons_the_upload() {
        let dir = tempfile::tempdir().unwrap();
        let mut up = upload(dir.path(), 100);
        up.write(0, vec![1; 60]).await.unwrap();
        let e = up.write(60, vec![1; 60]).await.unwrap_err();
        assert_eq!(
            e,
            UploadError::TooLarge {
                size: 120,
                max: 100
            }
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join(".partial"))
                .unwrap()
                .count(),
            0
        );
        assert!(up
            .finish()
            .await
            .unwrap_err()
            .to_string()
            .contains("file too large"));
        assert!(!dir.path().join("target").exists());
    }

    #[tokio::test]
    async fn a_full_disk_fails_the_upload_and_keeps_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"original").unwrap();
        // A "temporary file" that is /dev/full: every write fails with ENOSPC.
        let temp = dir.path().join("full.part");
        std::os::unix::fs::symlink("/dev/full", &temp).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&temp).unwrap();
        let mut up = Upload::from_parts(file, temp.clone(), target.clone(), ROOMY);
        let e = up.write(0, vec![1; 4096]).await.unwrap_err();
        assert_eq!(e, UploadError::DiskFull("/library/test".into()));
        assert!(
            up.write(4096, vec![1; 10]).await.is_err(),
            "later writes fail too"
        );
        assert!(up.finish().await.is_err());
        assert!(
            std::fs::symlink_metadata(&temp).is_err(),
            "temporary file removed"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"original");
    }

    #[tokio::test]
    async fn resuming_copies_nothing_until_the_first_write() {
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join(".partial");
        std::fs::create_dir_all(&partial).unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"hello world").unwrap();
        let open = || {
            Upload::create(
                &partial,
                target.clone(),
                "/library/target".into(),
                ROOMY,
                true,
                false,
            )
            .unwrap()
        };
        let temp_len = |up: &Upload| std::fs::metadata(&up.temp).unwrap().len();
        let up = open();
        assert_eq!((up.len(), temp_len(&up)), (11, 0));
        assert_eq!(
            up.read(6, 100).await.unwrap(),
            b"world",
            "read from the original"
        );
        assert!(up.finish().await.unwrap().is_none(), "unchanged");
        assert_eq!(std::fs::read(&target).unwrap(), b"hello world");

        let mut up = open();
        up.write(0, b"J".to_vec()).await.unwrap();
        assert_eq!(temp_len(&up), 11);
        let done = up.finish().await.unwrap().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"Jello world");
        assert_eq!(done.hash, blake3::hash(b"Jello world").to_hex().to_string());
        assert_eq!(std::fs::read_dir(&partial).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn resuming_copies_and_hashes_the_existing_content() {
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join(".partial");
        std::fs::create_dir_all(&partial).unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"hello ").unwrap();
        let mut up = Upload::create(
            &partial,
            target.clone(),
            "/library/target".into(),
            ROOMY,
            true,
            true,
        )
        .unwrap();
        up.write(0, b"world".to_vec()).await.unwrap(); // APPEND: offset ignored
        let done = up.finish().await.unwrap().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"hello world");
        assert_eq!(done.hash, blake3::hash(b"hello world").to_hex().to_string());
    }
}
