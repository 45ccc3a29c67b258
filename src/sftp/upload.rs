//! An upload in progress: a temporary file in `.partial/`, hashed as the bytes arrive, renamed
//! into `library/` only when closed complete.
//!
//! **Invariant:** the temporary file is removed unless [`Upload::finish`] renamed it into
//! place: on a failed write (full disk, quota), on a failed close, and on drop (a client cut
//! off mid-upload drops its session's handles).

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    #[error(
        "quota exceeded: {allowed} bytes allowed, {used} used, this upload would add {adding}"
    )]
    Quota {
        allowed: u64,
        used: u64,
        adding: u64,
    },
    #[error("disk full: upload of {0} abandoned, nothing was changed")]
    DiskFull(String),
    #[error("upload of {path} failed: {reason}")]
    Io { path: String, reason: String },
    #[error("upload of {path} abandoned earlier: {reason}")]
    Abandoned { path: String, reason: String },
}

/// What an upload may grow to.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// `library.max_file_bytes`.
    pub max_file_bytes: u64,
    /// `library.quota_bytes`.
    pub quota_bytes: u64,
    /// The user's usage when the upload was opened (or, at close, now).
    pub used: u64,
    /// Size of the file this upload replaces (0 for a new file): already counted in `used`.
    pub replaced: u64,
}

impl Budget {
    /// Whether a file of `len` bytes fits. An upload that doesn't add to the usage always fits
    /// the quota (replacing a file with a smaller one is allowed even over quota).
    pub fn check(&self, len: u64) -> Result<(), UploadError> {
        if len > self.max_file_bytes {
            return Err(UploadError::TooLarge {
                size: len,
                max: self.max_file_bytes,
            });
        }
        let adding = len.saturating_sub(self.replaced);
        if adding > 0 && self.used.saturating_add(adding) > self.quota_bytes {
            return Err(UploadError::Quota {
                allowed: self.quota_bytes,
                used: self.used,
                adding,
            });
        }
        Ok(())
    }
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
    pub budget: Budget,
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
    /// existing content of `target` is copied (and hashed) first. Blocking.
    pub fn create(
        partial_dir: &Path,
        target: PathBuf,
        shown: String,
        budget: Budget,
        resume: bool,
        append: bool,
    ) -> std::io::Result<Upload> {
        let (file, temp) = create_temp(partial_dir)?;
        let mut upload = Upload::empty(file, temp, target, shown, budget, append);
        if resume {
            // Drop removes the temporary file if the copy fails.
            upload.copy_existing()?;
        }
        Ok(upload)
    }

    /// Copies the target's current content into the temporary file, hashing it.
    fn copy_existing(&mut self) -> std::io::Result<()> {
        let mut source = File::open(&self.target)?;
        let mut buf = vec![0u8; COPY_CHUNK];
        let hasher = self.hasher.get_or_insert_with(blake3::Hasher::new);
        loop {
            let n = source.read(&mut buf)?;
            if n == 0 {
                break;
            }
            self.file.write_all_at(&buf[..n], self.len)?;
            hasher.update(&buf[..n]);
            self.len += n as u64;
        }
        self.hashed = self.len;
        Ok(())
    }

    /// A new, empty upload into the temporary `file` at `temp`.
    fn empty(
        file: File,
        temp: PathBuf,
        target: PathBuf,
        shown: String,
        budget: Budget,
        append: bool,
    ) -> Upload {
        Upload {
            file: Arc::new(file),
            temp,
            target,
            shown,
            hasher: Some(blake3::Hasher::new()),
            hashed: 0,
            dirty: false,
            len: 0,
            append,
            budget,
            times: None,
            failed: None,
            done: false,
            synced: 0,
            syncing: None,
        }
    }

    #[cfg(test)]
    fn from_parts(file: File, temp: PathBuf, target: PathBuf, budget: Budget) -> Upload {
        Upload::empty(file, temp, target, "/library/test".into(), budget, false)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Writes `data` at `offset`, hashing it if it continues the bytes hashed so far.
    pub async fn write(&mut self, offset: u64, data: Vec<u8>) -> Result<(), UploadError> {
        if let Some(e) = &self.failed {
            return Err(self.abandoned(e));
        }
        let offset = if self.append { self.len } else { offset };
        let end = offset.saturating_add(data.len() as u64);
        let new_len = self.len.max(end);
        if let Err(e) = self.budget.check(new_len) {
            return Err(self.fail(e));
        }
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
        read_at(self.file.clone(), offset, len).await
    }

    /// Truncates or extends the file (fsetstat with a size).
    pub async fn set_len(&mut self, len: u64) -> Result<(), UploadError> {
        if let Some(e) = &self.failed {
            return Err(self.abandoned(e));
        }
        if let Err(e) = self.budget.check(len) {
            return Err(self.fail(e));
        }
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

    /// Completes the upload: checks the budget once more (with `used` as of now), makes the
    /// hash whole, syncs, and renames the file into place. On error the temporary file is gone.
    pub async fn finish(mut self, used_now: u64) -> Result<Finished, UploadError> {
        if let Some(e) = &self.failed {
            return Err(self.abandoned(e));
        }
        self.budget.used = used_now;
        if let Err(e) = self.budget.check(self.len) {
            return Err(self.fail(e));
        }
        if let Some(flush) = self.syncing.take() {
            let _ = flush.await;
        }
        let shown = self.shown.clone();
        // On error `self` drops in the blocking task, removing the temporary file.
        match tokio::task::spawn_blocking(move || self.finish_blocking()).await {
            Ok(Ok(finished)) => Ok(finished),
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

    const ROOMY: Budget = Budget {
        max_file_bytes: 1 << 20,
        quota_bytes: 1 << 30,
        used: 0,
        replaced: 0,
    };

    fn upload(dir: &Path, budget: Budget) -> Upload {
        let partial = dir.join(".partial");
        std::fs::create_dir_all(&partial).unwrap();
        Upload::create(
            &partial,
            dir.join("target"),
            "/library/target".into(),
            budget,
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
        let done = up.finish(0).await.unwrap();
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
        let done = up.finish(0).await.unwrap();
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
    async fn budget_refusals_abandon_the_upload() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Budget {
            max_file_bytes: 100,
            ..ROOMY
        };
        let mut up = upload(dir.path(), budget);
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
            .finish(0)
            .await
            .unwrap_err()
            .to_string()
            .contains("file too large"));
        assert!(!dir.path().join("target").exists());

        let quota = Budget {
            quota_bytes: 1000,
            used: 900,
            replaced: 50,
            ..ROOMY
        };
        assert!(quota.check(150).is_ok(), "50 replaced + 100 free");
        assert_eq!(
            quota.check(151),
            Err(UploadError::Quota {
                allowed: 1000,
                used: 900,
                adding: 101
            })
        );
        let over = Budget {
            used: 2000,
            ..quota
        };
        assert!(
            over.check(40).is_ok(),
            "shrinking a file is allowed over quota"
        );
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
        assert!(up.finish(0).await.is_err());
        assert!(
            std::fs::symlink_metadata(&temp).is_err(),
            "temporary file removed"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"original");
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
        let done = up.finish(0).await.unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"hello world");
        assert_eq!(done.hash, blake3::hash(b"hello world").to_hex().to_string());
    }
}
