//! The SFTP subsystem: each user's virtual root with `library/` and `downloads/`.
//!
//! - `paths.rs`: virtual path resolution (lexical, clamped at `/`) and the symlink-refusing
//!   mapping to real paths.
//! - `upload.rs`: an upload in progress (temporary file, incremental BLAKE3, lazy copy of the
//!   file it changes).
//! - `listing.rs`: attributes, `ls -l` long names, folder listings read a batch at a time.
//!
//! Quota bytes are reserved (`Library::grow`) before an upload writes them, and released
//! only once the file is in place and catalogued; writable handles per user and entries
//! (files and folders) per user are capped too (`library.max_uploads_per_user`,
//! `library.max_entries`).
//!
//! `library/` is read-write (files and subfolders); `downloads/` can be read, renamed within
//! and deleted from; `/` itself is read-only. Requests of one session are handled one after
//! another (russh-sftp), so a session's state needs no locking.
//!
//! **Boundary:** this is an adapter. What a finished upload means for the catalog is
//! `Library`'s business (`file_added`, `file_removed`, `renamed`).

mod listing;
pub(crate) mod paths;
mod upload;

use std::collections::{HashMap, VecDeque};
use std::fs::File as FsFile;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use russh_sftp::protocol::{
    Attrs, Data, ExtendedReply, File, FileAttributes, Handle as HandleReply, Name, OpenFlags,
    Packet, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::app::{App, User};
use crate::quota::{EntrySlot, OpenHandles, QuotaError, Reservation, UploadSlot};
use listing::Listing;
use paths::{Area, PathError, Roots, VPath};
use upload::{Upload, UploadError};

/// Most handles (open files and folders) one session may hold at once.
pub const MAX_OPEN_HANDLES: usize = 64;
/// Most of those that may be folders: each holds a directory stream (a file descriptor and
/// its buffer) until closed, and clients read a folder then close it.
pub const MAX_OPEN_DIRS: usize = 16;
/// Largest SFTP packet a client may send (OpenSSH's sftp-server uses the same).
pub const MAX_PACKET_LEN: u32 = 256 * 1024;
/// Largest read or write payload, leaving room for the packet's header within
/// [`MAX_PACKET_LEN`]; advertised with `limits@openssh.com` so clients use big chunks.
pub const MAX_DATA_LEN: u32 = MAX_PACKET_LEN - 1024;
/// Directory entries per READDIR reply.
const READDIR_BATCH: usize = 128;

/// Largest read payload, advertised with `limits@openssh.com`. OpenSSH keeps 64 reads in
/// flight; at 128 KiB each that is 8 MiB of replies a download may have queued, where the
/// full packet size would be 16 MiB (measured: +38 MiB peak RSS against +69 MiB, and `get`
/// still faster than sftp-server; 64 KiB saved another 17 MiB but brought `get` near parity).
pub const MAX_READ_LEN: u32 = 128 * 1024;

const EXT_LIMITS: &str = "limits@openssh.com";
const EXT_POSIX_RENAME: &str = "posix-rename@openssh.com";

/// Reply bytes that may wait for the client's SSH window: OpenSSH keeps 64 requests in
/// flight, each answered with one packet of at most [`MAX_READ_LEN`] data (plus a header).
const REPLY_BUFFER_BYTES: usize = 65 * (MAX_READ_LEN as usize + 1024);

/// Keeps the channel open after [`serve`] returns: dropping russh's channel stream closes the
/// channel, and the caller must send the exit status first (scp counts a channel closed
/// without one as a failure). Drop it once the exit status is sent.
pub struct OpenChannel {
    _stream: Box<dyn Send>,
}

/// Serves one SFTP session on `stream` until the client closes it; returns what keeps the
/// channel open until the caller has sent the exit status.
///
/// Replies go through a buffer drained by a task of their own, so that answering never stops
/// the session from reading requests. Without it a download deadlocks: while a reply waits for
/// window, russh queues the client's requests and window adjustments for this channel; once
/// that queue is full, russh stops reading the connection, and so never sees the window
/// adjustment the reply waits for.
pub async fn serve<S>(app: App, user: User, stream: S) -> Option<OpenChannel>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if let Err(e) = app.library.prepare(user.id).await {
        tracing::error!(user = %user.nick, "cannot prepare the user's folders: {e}");
        return Some(OpenChannel {
            _stream: Box::new(stream),
        });
    }
    let (requests, mut channel_out) = tokio::io::split(stream);
    // A duplex end signals EOF to the other when dropped (a simplex half would not).
    let (replies, replies_out) = tokio::io::duplex(REPLY_BUFFER_BYTES);
    let sender = tokio::spawn(async move {
        let mut replies_out =
            tokio::io::BufReader::with_capacity(MAX_PACKET_LEN as usize, replies_out);
        let _ = tokio::io::copy_buf(&mut replies_out, &mut channel_out).await;
        let _ = channel_out.flush().await;
        channel_out
    });
    let (done_tx, done_rx) = oneshot::channel();
    let session = Sftp::new(app, user, done_tx);
    let config = russh_sftp::server::Config {
        max_client_packet_len: MAX_PACKET_LEN,
    };
    russh_sftp::server::run_with_config(tokio::io::join(requests, replies), session, config).await;
    // russh-sftp runs the session in a task of its own; it drops the handler (removing
    // unfinished uploads) and the reply buffer when the client is gone.
    let _ = done_rx.await;
    sender.await.ok().map(|channel_out| OpenChannel {
        _stream: Box::new(channel_out),
    })
}

/// Why a request failed; becomes the SFTP status the client sees.
#[derive(Debug, thiserror::Error)]
enum SftpError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Limit(#[from] QuotaError),
    #[error("no such file or folder: {0}")]
    NotFound(String),
    #[error("permission denied: {0}")]
    Denied(String),
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("end of file")]
    Eof,
    #[error("no such handle: {0:?} (closed or never opened)")]
    BadHandle(String),
}

impl From<SftpError> for StatusReply {
    fn from(e: SftpError) -> StatusReply {
        let code = match &e {
            SftpError::Path(PathError::OutsideTree(_)) | SftpError::NotFound(_) => {
                StatusCode::NoSuchFile
            }
            SftpError::Path(PathError::Symlink(_) | PathError::RootReadOnly(_))
            | SftpError::Denied(_) => StatusCode::PermissionDenied,
            SftpError::Unsupported(_) => StatusCode::OpUnsupported,
            SftpError::Eof => StatusCode::Eof,
            SftpError::Path(_)
            | SftpError::Upload(_)
            | SftpError::Limit(_)
            | SftpError::Failed(_)
            | SftpError::BadHandle(_) => StatusCode::Failure,
        };
        code.with_message(e.to_string())
    }
}

/// An error from the file system about `shown` (a virtual path).
fn io_error(shown: &impl std::fmt::Display, e: std::io::Error) -> SftpError {
    match e.kind() {
        ErrorKind::NotFound => SftpError::NotFound(shown.to_string()),
        ErrorKind::PermissionDenied => SftpError::Denied(shown.to_string()),
        ErrorKind::AlreadyExists => SftpError::Failed(format!("already exists: {shown}")),
        ErrorKind::DirectoryNotEmpty => SftpError::Failed(format!("folder not empty: {shown}")),
        ErrorKind::IsADirectory => SftpError::Failed(format!("is a folder: {shown}")),
        ErrorKind::NotADirectory => SftpError::Failed(format!("not a folder: {shown}")),
        ErrorKind::StorageFull => SftpError::Failed(format!("disk full: {shown}")),
        _ => SftpError::Failed(format!("{shown}: {e}")),
    }
}

/// Runs file system work off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SftpError> + Send + 'static,
) -> Result<T, SftpError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(SftpError::Failed(format!("internal error: {e}"))))
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".to_owned(),
        language_tag: "en-US".to_owned(),
    }
}

/// What an upload in progress looks like to `stat`: a private file of its current length.
fn upload_attrs(writing: &Writing) -> FileAttributes {
    let upload = &writing.upload;
    FileAttributes {
        size: Some(upload.len()),
        permissions: Some(0o100_600),
        ..FileAttributes::default()
    }
}

/// Something a handle refers to.
enum Handle {
    /// A file open for reading.
    Read { file: Arc<FsFile>, area: Area },
    /// An upload in progress.
    Upload(Box<Writing>),
    /// A folder listing, read a batch per READDIR (`None` while a batch is being read).
    Dir(Option<Box<Listing>>),
}

/// An upload with what it holds against the user's limits.
struct Writing {
    upload: Upload,
    /// Quota bytes reserved for the temporary file; released once the file is catalogued.
    reservation: Reservation,
    /// Counts against `library.max_uploads_per_user`; may hold the replaced file's credit.
    slot: UploadSlot,
    /// Counts against `library.max_entries` while a new file is uploaded.
    _entry: Option<EntrySlot>,
}

impl Writing {
    /// Reserves what the temporary file needs at `len` bytes: its length less the credit for
    /// the file it replaces. Refusal abandons the upload.
    async fn reserve(&mut self, app: &App, len: u64) -> Result<(), SftpError> {
        let need = len.saturating_sub(self.slot.credit);
        if let Err(e) = app.library.grow(&mut self.reservation, need).await {
            let e = self.upload.refuse(e.into());
            self.release(app);
            return Err(e.into());
        }
        Ok(())
    }

    /// Gives back the reserved bytes of an upload that failed (its temporary file is gone).
    fn release(&mut self, app: &App) {
        self.reservation = app.library.reservation(self.reservation.user_id());
    }
}

/// One SFTP session: the user's tree and their open handles.
struct Sftp {
    app: App,
    user: User,
    /// The user's `library/` and `downloads/`.
    roots: Roots,
    /// Where uploads live until complete.
    partial: PathBuf,
    handles: HashMap<String, Handle>,
    /// The handles above, counted against the user's and the instance's open file limits.
    held: OpenHandles,
    /// Makes handle names unique within the session.
    next_handle: u64,
    /// The connection's span: russh-sftp runs us in a task of its own.
    span: tracing::Span,
    /// Dropped with the session, telling [`serve`] the client is gone.
    _done: oneshot::Sender<()>,
}

impl Sftp {
    fn new(app: App, user: User, done: oneshot::Sender<()>) -> Sftp {
        let roots = Roots {
            library: app.library.library_dir(user.id),
            downloads: app.library.downloads_dir(user.id),
        };
        let partial = app.library.partial_dir(user.id);
        let held = app.library.open_handles(user.id);
        Sftp {
            held,
            app,
            user,
            roots,
            partial,
            handles: HashMap::new(),
            next_handle: 0,
            span: tracing::Span::current(),
            _done: done,
        }
    }

    /// Whether another handle (a folder's, with `dir`) may be opened.
    fn room(&self, dir: bool) -> Result<(), SftpError> {
        if self.handles.len() >= MAX_OPEN_HANDLES {
            return Err(SftpError::Failed(format!(
                "too many open files: at most {MAX_OPEN_HANDLES} per session, close some first"
            )));
        }
        let dirs = || {
            self.handles
                .values()
                .filter(|h| matches!(h, Handle::Dir(_)))
                .count()
        };
        if dir && dirs() >= MAX_OPEN_DIRS {
            return Err(SftpError::Failed(format!(
                "too many open folders: at most {MAX_OPEN_DIRS} per session, close some first"
            )));
        }
        Ok(())
    }

    fn add_handle(&mut self, handle: Handle) -> Result<String, SftpError> {
        self.room(matches!(handle, Handle::Dir(_)))?;
        let limits = &self.app.library.limits;
        self.held
            .take(limits.max_open_files_per_user, limits.max_open_files)?;
        self.next_handle += 1;
        let name = format!("h{}", self.next_handle);
        self.handles.insert(name.clone(), handle);
        Ok(name)
    }

    fn handle(&mut self, name: &str) -> Result<&mut Handle, SftpError> {
        self.handles
            .get_mut(name)
            .ok_or_else(|| SftpError::BadHandle(name.to_owned()))
    }

    /// The real path of something inside `library/` or `downloads/` (the folder itself when
    /// `rel` is empty), refusing symlinks. Blocking.
    fn real(roots: &Roots, path: &VPath) -> Result<PathBuf, SftpError> {
        match path {
            VPath::Root => Err(SftpError::Denied(format!("{path} is the virtual root"))),
            VPath::In { area, rel } => Ok(paths::real_path(roots, *area, rel, path)?),
        }
    }

    async fn open_read(&mut self, path: VPath) -> Result<String, SftpError> {
        let VPath::In { area, .. } = path else {
            return Err(SftpError::Failed("is a folder: /".to_owned()));
        };
        let roots = self.roots.clone();
        let file = blocking(move || {
            let real = Self::real(&roots, &path)?;
            let file = FsFile::open(&real).map_err(|e| io_error(&path, e))?;
            let meta = file.metadata().map_err(|e| io_error(&path, e))?;
            if meta.is_dir() {
                return Err(SftpError::Failed(format!("is a folder: {path}")));
            }
            // The file opened must be the one checked, not something swapped in since.
            let here = std::fs::symlink_metadata(&real).map_err(|e| io_error(&path, e))?;
            if here.ino() != meta.ino() || here.dev() != meta.dev() {
                return Err(PathError::Symlink(path.to_string()).into());
            }
            Ok(file)
        })
        .await?;
        self.add_handle(Handle::Read {
            file: Arc::new(file),
            area,
        })
    }

    async fn open_write(&mut self, path: VPath, flags: OpenFlags) -> Result<String, SftpError> {
        let rel = match &path {
            VPath::Root => {
                return Err(SftpError::Denied(
                    "/ is read-only: upload into /library".to_owned(),
                ))
            }
            VPath::In {
                area: Area::Downloads,
                ..
            } => {
                return Err(SftpError::Denied(format!(
                    "{path}: /downloads is read-only (files there can be read, renamed and deleted)"
                )))
            }
            VPath::In { rel, .. } if rel.is_empty() => {
                return Err(SftpError::Failed(format!("is a folder: {path}")))
            }
            VPath::In { .. } => path.rel(),
        };
        let roots = self.roots.clone();
        let shown = path.clone();
        let (real, existing) = blocking(move || {
            let real = Self::real(&roots, &path)?;
            let existing = match std::fs::symlink_metadata(&real) {
                Ok(meta) if meta.is_dir() => {
                    return Err(SftpError::Failed(format!("is a folder: {path}")))
                }
                Ok(meta) => Some(meta.len()),
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => return Err(io_error(&path, e)),
            };
            match (existing, flags.contains(OpenFlags::CREATE)) {
                (None, false) => return Err(SftpError::NotFound(path.to_string())),
                (Some(_), true) if flags.contains(OpenFlags::EXCLUDE) => {
                    return Err(SftpError::Failed(format!("already exists: {path}")))
                }
                _ => {}
            }
            let parent_is_dir = real
                .parent()
                .and_then(|p| std::fs::symlink_metadata(p).ok())
                .is_some_and(|m| m.is_dir());
            if !parent_is_dir {
                return Err(SftpError::NotFound(format!(
                    "{path} (its folder does not exist)"
                )));
            }
            Ok((real, existing))
        })
        .await?;
        let library = &self.app.library;
        let slot = library.open_upload(self.user.id, &real, existing.unwrap_or(0))?;
        // A new file needs room for one more entry; it is counted when it lands.
        let entry = match existing {
            None => Some(library.entry_slot(self.user.id).await?),
            Some(_) => None,
        };
        let max_file_bytes = library.limits.max_file_bytes;
        let partial = self.partial.clone();
        let resume = existing.is_some() && !flags.contains(OpenFlags::TRUNCATE);
        let append = flags.contains(OpenFlags::APPEND);
        let upload = blocking(move || {
            let shown = shown.to_string();
            Ok(Upload::create(
                &partial,
                real,
                shown,
                max_file_bytes,
                resume,
                append,
            )?)
        })
        .await?;
        let writing = Writing {
            upload,
            reservation: library.reservation(self.user.id),
            slot,
            _entry: entry,
        };
        tracing::debug!(parent: &self.span, path = %writing.upload.shown, catalog = %rel, "upload started");
        self.add_handle(Handle::Upload(Box::new(writing)))
    }

    /// Puts an upload in place and catalogues it; its reservation is released only then, so
    /// a concurrent quota check sees the reservation or the file, never neither.
    async fn finish_upload(&mut self, mut writing: Writing) -> Result<(), SftpError> {
        let shown = writing.upload.shown.clone();
        let rel = paths::resolve(&shown)?.rel();
        // The file replaced may have shrunk or gone since the open: its credit shrinks too.
        let target = writing.upload.target().to_owned();
        let current = blocking(move || Ok(target_len(&target))).await?;
        let credit = writing.slot.credit.min(current.unwrap_or(0));
        writing.slot.credit = credit;
        if writing.upload.changed() {
            let len = writing.upload.len();
            writing.reserve(&self.app, len).await?;
        }
        let Writing {
            upload,
            reservation,
            slot,
            _entry,
        } = writing;
        // On error, dropping `upload` removes its temporary file.
        let done = upload.finish().await.inspect_err(|e| {
            tracing::info!(parent: &self.span, path = %shown, "upload failed: {e}");
        })?;
        let Some(done) = done else {
            return Ok(());
        };
        if current.is_none() {
            self.app.library.entry_added(self.user.id);
        }
        // Held until the catalog counts the file.
        let _held = (reservation, slot, _entry);
        if let Err(e) = self
            .app
            .library
            .file_added(
                self.user.id,
                &rel,
                done.size,
                &done.hash,
                done.modified,
                done.identity,
            )
            .await
        {
            tracing::error!(parent: &self.span, path = %shown, "upload saved but not catalogued: {e}");
            return Err(SftpError::Failed(format!(
                "{shown} saved but not catalogued: {e}"
            )));
        }
        tracing::info!(
            parent: &self.span,
            path = %shown,
            size = done.size,
            hash = &done.hash[..12.min(done.hash.len())],
            "upload complete"
        );
        Ok(())
    }

    /// Opens a listing of `path`: the virtual root's entries, or a real folder's stream.
    async fn list(&mut self, path: VPath) -> Result<Listing, SftpError> {
        let roots = self.roots.clone();
        let owner = self.user.nick.clone();
        blocking(move || {
            let now = i64::from(upload::unix_secs(std::time::SystemTime::now()));
            let VPath::In { area, .. } = path else {
                let mut entries = VecDeque::new();
                for area in [Area::Library, Area::Downloads] {
                    let meta = std::fs::symlink_metadata(roots.of(area))
                        .map_err(|e| io_error(&area.name(), e))?;
                    entries.push_back(listing::entry(
                        area.name(),
                        listing::attrs(&meta, area),
                        &owner,
                        now,
                    ));
                }
                return Ok(Listing::Fixed(entries));
            };
            let real = Self::real(&roots, &path)?;
            let meta = std::fs::symlink_metadata(&real).map_err(|e| io_error(&path, e))?;
            if !meta.is_dir() {
                return Err(SftpError::Failed(format!("not a folder: {path}")));
            }
            let entries = std::fs::read_dir(&real).map_err(|e| io_error(&path, e))?;
            Ok(Listing::Reading {
                entries,
                area,
                owner,
            })
        })
        .await
    }

    async fn stat_path(&self, path: VPath) -> Result<FileAttributes, SftpError> {
        let roots = self.roots.clone();
        blocking(move || match &path {
            VPath::Root => Ok(listing::root_attrs()),
            VPath::In { area, .. } => {
                let real = Self::real(&roots, &path)?;
                let meta = std::fs::symlink_metadata(&real).map_err(|e| io_error(&path, e))?;
                Ok(listing::attrs(&meta, *area))
            }
        })
        .await
    }

    async fn rename_path(&mut self, from: &str, to: &str, replace: bool) -> Result<(), SftpError> {
        let (from, to) = (paths::resolve(from)?, paths::resolve_for_write(to)?);
        let (Some((from_area, from_rel)), Some((to_area, to_rel))) = (from.entry(), to.entry())
        else {
            return Err(SftpError::Denied(format!(
                "{from} -> {to}: /, /library and /downloads can't be renamed or replaced"
            )));
        };
        if from_area != to_area {
            return Err(SftpError::Denied(format!(
                "{from} -> {to}: files can't move between /library and /downloads"
            )));
        }
        if from == to {
            return Ok(());
        }
        let roots = self.roots.clone();
        let replaced = blocking(move || {
            let (real_from, real_to) = (Self::real(&roots, &from)?, Self::real(&roots, &to)?);
            std::fs::symlink_metadata(&real_from).map_err(|e| io_error(&from, e))?;
            let replaced = std::fs::symlink_metadata(&real_to).is_ok();
            if !replace && replaced {
                return Err(SftpError::Failed(format!("already exists: {to}")));
            }
            std::fs::rename(&real_from, &real_to)
                .map_err(|e| io_error(&format!("{from} -> {to}"), e))?;
            Ok(replaced)
        })
        .await?;
        if replaced {
            self.app.library.entry_removed(self.user.id);
        }
        if from_area == Area::Library {
            self.app
                .library
                .renamed(self.user.id, &from_rel, &to_rel)
                .await
                .map_err(|e| {
                    SftpError::Failed(format!("renamed, but the catalog was not updated: {e}"))
                })?;
        }
        Ok(())
    }
}

/// The length of the file at `path`, if there is one. Blocking.
fn target_len(path: &Path) -> Option<u64> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

/// Reads the SSH string at the start of `data`, returning it and the rest.
fn take_string(data: &[u8]) -> Option<(String, &[u8])> {
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let bytes = data.get(4..4usize.checked_add(len)?)?;
    Some((
        String::from_utf8_lossy(bytes).into_owned(),
        &data[4 + len..],
    ))
}

impl russh_sftp::server::Handler for Sftp {
    type Error = SftpError;

    fn unimplemented(&self) -> SftpError {
        SftpError::Unsupported("operation not supported by this server".to_owned())
    }

    async fn init(
        &mut self,
        version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, SftpError> {
        tracing::debug!(parent: &self.span, version, "sftp session started");
        let mut reply = Version::new();
        reply
            .extensions
            .insert(EXT_LIMITS.to_owned(), "1".to_owned());
        reply
            .extensions
            .insert(EXT_POSIX_RENAME.to_owned(), "1".to_owned());
        Ok(reply)
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<HandleReply, SftpError> {
        // Refuse before any work (an upload's temporary file, a quota query).
        self.room(false)?;
        let writes = OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        let handle = if pflags.intersects(writes) {
            self.open_write(paths::resolve_for_write(&filename)?, pflags)
                .await?
        } else {
            self.open_read(paths::resolve(&filename)?).await?
        };
        Ok(HandleReply { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, SftpError> {
        let removed = self.handles.remove(&handle);
        if removed.is_some() {
            self.held.give_back();
        }
        match removed {
            None => Err(SftpError::BadHandle(handle)),
            Some(Handle::Upload(writing)) => self.finish_upload(*writing).await.map(|()| ok(id)),
            Some(_) => Ok(ok(id)),
        }
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, SftpError> {
        let len = len.min(MAX_READ_LEN) as usize;
        let data = match self.handle(&handle)? {
            Handle::Read { file, .. } => upload::read_at(file.clone(), offset, len).await,
            Handle::Upload(writing) => writing.upload.read(offset, len).await,
            Handle::Dir(_) => {
                return Err(SftpError::Failed(format!("handle {handle:?} is a folder")))
            }
        }
        .map_err(|e| SftpError::Failed(format!("read failed: {e}")))?;
        if data.is_empty() && len > 0 {
            return Err(SftpError::Eof);
        }
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, SftpError> {
        let span = self.span.clone();
        let app = self.app.clone();
        match self.handle(&handle)? {
            Handle::Upload(writing) => {
                let end = writing.upload.end_of_write(offset, data.len());
                let written = match writing.reserve(&app, end).await {
                    Ok(()) => writing.upload.write(offset, data).await.map_err(Into::into),
                    Err(e) => Err(e),
                };
                if written.is_err() {
                    writing.release(&app);
                }
                written.inspect_err(|e| {
                    tracing::info!(parent: &span, path = %writing.upload.shown, "upload refused: {e}");
                })?;
                Ok(ok(id))
            }
            _ => Err(SftpError::Denied(format!(
                "handle {handle:?} is not open for writing"
            ))),
        }
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, SftpError> {
        self.stat(id, path).await
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, SftpError> {
        let path = paths::resolve(&path)?;
        // A file this session is uploading is visible at its path while it is written, as
        // on a real file system (sshfs checks a file right after creating it).
        let shown = path.to_string();
        let uploading = self.handles.values().find_map(|h| match h {
            Handle::Upload(w) if w.upload.shown == shown => Some(upload_attrs(w)),
            _ => None,
        });
        let attrs = match uploading {
            Some(attrs) => attrs,
            None => self.stat_path(path).await?,
        };
        Ok(Attrs { id, attrs })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, SftpError> {
        let attrs = match self.handle(&handle)? {
            Handle::Read { file, area } => {
                let meta = file
                    .metadata()
                    .map_err(|e| SftpError::Failed(format!("stat failed: {e}")))?;
                listing::attrs(&meta, *area)
            }
            Handle::Upload(writing) => upload_attrs(writing),
            Handle::Dir(_) => listing::root_attrs(),
        };
        Ok(Attrs { id, attrs })
    }

    /// Accepted and ignored (scp and sftp send modes and times after an upload); only a
    /// size change is refused. The path must exist.
    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, SftpError> {
        let path = paths::resolve(&path)?;
        let current = self.stat_path(path.clone()).await?;
        if attrs.size.is_some_and(|size| Some(size) != current.size) {
            return Err(SftpError::Unsupported(format!(
                "{path}: changing a file's size is not supported, upload it again"
            )));
        }
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, SftpError> {
        let app = self.app.clone();
        if let Handle::Upload(writing) = self.handle(&handle)? {
            if let Some(size) = attrs.size.filter(|&s| s != writing.upload.len()) {
                // Before the change, the temporary file holds a copy of the current length.
                let len = writing.upload.len().max(size);
                writing.reserve(&app, len).await?;
                if let Err(e) = writing.upload.set_len(size).await {
                    writing.release(&app);
                    return Err(e.into());
                }
            }
            if let (Some(atime), Some(mtime)) = (attrs.atime, attrs.mtime) {
                writing.upload.set_times(atime, mtime);
            }
        }
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<HandleReply, SftpError> {
        self.room(true)?;
        let listing = self.list(paths::resolve(&path)?).await?;
        let handle = self.add_handle(Handle::Dir(Some(Box::new(listing))))?;
        Ok(HandleReply { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, SftpError> {
        let Handle::Dir(slot) = self.handle(&handle)? else {
            return Err(SftpError::Failed(format!(
                "handle {handle:?} is not a folder"
            )));
        };
        let mut listing = slot
            .take()
            .ok_or_else(|| SftpError::Failed(format!("handle {handle:?}: listing unavailable")))?;
        let (listing, batch) = blocking(move || {
            let batch = listing.next_batch(READDIR_BATCH);
            Ok((listing, batch))
        })
        .await?;
        if let Ok(Handle::Dir(slot)) = self.handle(&handle) {
            *slot = Some(listing);
        }
        let files = batch.map_err(|e| SftpError::Failed(format!("cannot list folder: {e}")))?;
        if files.is_empty() {
            return Err(SftpError::Eof);
        }
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, SftpError> {
        let path = paths::resolve(&filename)?;
        let Some((area, rel)) = path.entry() else {
            return Err(SftpError::Denied(format!("{path} can't be removed")));
        };
        let roots = self.roots.clone();
        blocking(move || {
            let real = Self::real(&roots, &path)?;
            let meta = std::fs::symlink_metadata(&real).map_err(|e| io_error(&path, e))?;
            if meta.is_dir() {
                return Err(SftpError::Failed(format!(
                    "is a folder: {path} (use rmdir)"
                )));
            }
            std::fs::remove_file(&real).map_err(|e| io_error(&path, e))
        })
        .await?;
        self.app.library.entry_removed(self.user.id);
        if area == Area::Library {
            self.app
                .library
                .file_removed(self.user.id, &rel)
                .await
                .map_err(|e| {
                    SftpError::Failed(format!("removed, but the catalog was not updated: {e}"))
                })?;
        }
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, SftpError> {
        let path = paths::resolve_for_write(&path)?;
        match path.entry() {
            Some((Area::Library, _)) => {}
            Some((Area::Downloads, _)) => {
                return Err(SftpError::Denied(format!(
                    "{path}: /downloads is read-only, folders can be made in /library"
                )))
            }
            None if path == VPath::Root => {
                return Err(SftpError::Denied(
                    "/ is read-only: make folders in /library".to_owned(),
                ))
            }
            None => return Err(SftpError::Failed(format!("already exists: {path}"))),
        }
        let _entry = self.app.library.entry_slot(self.user.id).await?;
        let roots = self.roots.clone();
        blocking(move || {
            let real = Self::real(&roots, &path)?;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&real)
                .map_err(|e| io_error(&path, e))
        })
        .await?;
        self.app.library.entry_added(self.user.id);
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, SftpError> {
        let path = paths::resolve(&path)?;
        if path.entry().is_none() {
            return Err(SftpError::Denied(format!("{path} can't be removed")));
        }
        let roots = self.roots.clone();
        blocking(move || {
            let real = Self::real(&roots, &path)?;
            let meta = std::fs::symlink_metadata(&real).map_err(|e| io_error(&path, e))?;
            if !meta.is_dir() {
                return Err(SftpError::Failed(format!("not a folder: {path} (use rm)")));
            }
            std::fs::remove_dir(&real).map_err(|e| io_error(&path, e))
        })
        .await?;
        self.app.library.entry_removed(self.user.id);
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, SftpError> {
        let parts = paths::normalize(&path)?;
        Ok(Name {
            id,
            files: vec![File::dummy(paths::display(&parts))],
        })
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, SftpError> {
        self.rename_path(&oldpath, &newpath, false).await?;
        Ok(ok(id))
    }

    async fn readlink(&mut self, _id: u32, path: String) -> Result<Name, SftpError> {
        Err(SftpError::Unsupported(format!(
            "{path}: symbolic links are not supported"
        )))
    }

    async fn symlink(
        &mut self,
        _id: u32,
        linkpath: String,
        _targetpath: String,
    ) -> Result<Status, SftpError> {
        Err(SftpError::Denied(format!(
            "{linkpath}: symbolic links can't be created"
        )))
    }

    async fn extended(
        &mut self,
        id: u32,
        request: String,
        data: Vec<u8>,
    ) -> Result<Packet, SftpError> {
        match request.as_str() {
            EXT_LIMITS => {
                let mut reply = Vec::with_capacity(32);
                for value in [
                    u64::from(MAX_PACKET_LEN),
                    u64::from(MAX_READ_LEN),
                    u64::from(MAX_DATA_LEN),
                    MAX_OPEN_HANDLES as u64,
                ] {
                    reply.extend_from_slice(&value.to_be_bytes());
                }
                Ok(Packet::ExtendedReply(ExtendedReply { id, data: reply }))
            }
            EXT_POSIX_RENAME => {
                let (from, to) = take_string(&data)
                    .and_then(|(from, rest)| Some((from, take_string(rest)?.0)))
                    .ok_or_else(|| {
                        SftpError::Failed(format!("malformed {EXT_POSIX_RENAME} request"))
                    })?;
                self.rename_path(&from, &to, true).await?;
                Ok(Packet::Status(ok(id)))
            }
            _ => Err(SftpError::Unsupported(format!(
                "extension {request:?} is not supported"
            ))),
        }
    }
}
