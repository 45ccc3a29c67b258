//! The receiver of a `/get`: a file in the user's `downloads/`, made final under the file's
//! name only once every byte matched the id.
//!
//! A local file is written in `.partial/` and removed if the copy fails (it starts again from
//! scratch, on the same disk). A file from another instance is written to
//! `downloads/NAME.ID12.part` ([`part_name`]) and kept if the transfer fails: every byte in it
//! was verified before it was written, so the next `/get` of the id resumes after them. A
//! resumed file is hashed whole (the kept bytes as it resumes, then the rest as it arrives) and
//! made final only if it matches the id, so a part file changed meanwhile is caught.

use std::path::PathBuf;

use super::{Download, FetchError, Sink, Source};
use crate::library::{Library, PartialClaim};
use crate::quota::{EntrySlot, QuotaError, Reservation};

/// How many `name (n)` variants are tried before giving up.
const MAX_NAME_ATTEMPTS: usize = 1000;
/// Hex digits of the id in a part file's name: enough to tell same-named files apart.
const PART_ID_DIGITS: usize = 12;

/// The longest file name most file systems take, in bytes (`NAME_MAX`).
const NAME_MAX_BYTES: usize = 255;

/// `NAME.ID12.part`: where a download from another instance is written until it is complete
/// (`NAME` shortened, if need be, to keep the whole within [`NAME_MAX_BYTES`]).
pub fn part_name(d: &Download) -> String {
    let id = d.hash.get(..PART_ID_DIGITS).unwrap_or(&d.hash);
    let suffix = format!(".{id}.part");
    let mut end = d.name.len().min(NAME_MAX_BYTES - suffix.len());
    while !d.name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &d.name[..end])
}

/// A download on its way into a user's `downloads/`. Its bytes are reserved in the quota and
/// its entry counted from [`ToDownloads::create`] until it is in place or dropped.
pub struct ToDownloads {
    /// The file being written; `None` once it was made final or removed.
    target: Option<Target>,
    /// The same file, written asynchronously.
    out: tokio::fs::File,
    /// The user's `downloads/`.
    downloads: PathBuf,
    /// The name to save under (or `name (1)` and so on if taken).
    name: String,
    /// The download's id, to check a resumed file against.
    hash: String,
    user_id: i64,
    /// Told of the new entry once the file is in place.
    library: Library,
    /// Bytes the file held when it was opened (a resumed download); they are not sent again.
    resumed_from: u64,
    /// Bytes in the file now.
    written: u64,
    /// The hash of every byte in the file, for a resumed download.
    hasher: Option<blake3::Hasher>,
    /// Held until the file is in `downloads/`: concurrent `/get`s cannot overfill the quota.
    _reservation: Reservation,
    /// Room for one more entry, held likewise.
    _entry: EntrySlot,
}

/// Where a download is written until it is complete.
enum Target {
    /// A temporary file in `.partial/`, removed if dropped.
    Temp(tempfile::NamedTempFile),
    /// `downloads/NAME.ID12.part`, kept if dropped with bytes in it.
    Part {
        path: PathBuf,
        /// No other transfer writes it meanwhile.
        _claim: PartialClaim,
        /// The file was there before (its entry is counted already).
        existed: bool,
    },
}

impl ToDownloads {
    /// Makes room for `d` in `user_id`'s `downloads/`: within the file size bound, its bytes
    /// reserved in the quota (those still to come, for a resumed download), a free entry, the
    /// user's folders, the file to write.
    pub async fn create(
        library: &Library,
        user_id: i64,
        d: &Download,
    ) -> Result<ToDownloads, FetchError> {
        let max = library.limits.max_file_bytes;
        if d.size > max {
            return Err(FetchError::TooLarge {
                name: d.name.clone(),
                size: d.size,
                max,
            });
        }
        let io = |source| FetchError::Io {
            name: d.name.clone(),
            source,
        };
        library.prepare(user_id).await.map_err(io)?;
        let (target, file, resumed_from, hasher) = match d.source {
            Source::Local { .. } => {
                let partial = library.partial_dir(user_id);
                let temp = blocking(d, move || {
                    tempfile::Builder::new()
                        .prefix(".get-")
                        .tempfile_in(partial)
                })
                .await?;
                let file = temp.as_file().try_clone().map_err(io)?;
                (Target::Temp(temp), file, 0, None)
            }
            Source::Remote { .. } => {
                let path = library.downloads_dir(user_id).join(part_name(d));
                let Some(claim) = library.claim_partial(path.clone()) else {
                    return Err(FetchError::Running {
                        name: d.name.clone(),
                    });
                };
                let (at, size) = (path.clone(), d.size);
                let (file, existed, kept, hasher) =
                    blocking(d, move || open_part(&at, size)).await?;
                let target = Target::Part {
                    path,
                    _claim: claim,
                    existed,
                };
                (target, file, kept, hasher)
            }
        };
        let room = async {
            let reservation = library
                .reserve(user_id, d.size - resumed_from)
                .await
                .map_err(|e| match e {
                    QuotaError::Over { used, .. } => FetchError::OverQuota {
                        name: d.name.clone(),
                        size: d.size,
                        used,
                        quota: library.limits.quota_bytes,
                    },
                    e => e.into(),
                })?;
            let entry = library.entry_slot(user_id).await?;
            Ok::<_, FetchError>((reservation, entry))
        };
        let (reservation, entry) = match room.await {
            Ok(room) => room,
            Err(e) => {
                // A part file made just now, and empty, goes (a kept one stays).
                if let Target::Part {
                    path,
                    existed: false,
                    ..
                } = &target
                {
                    if resumed_from == 0 {
                        let _ = std::fs::remove_file(path);
                    }
                }
                return Err(e);
            }
        };
        Ok(ToDownloads {
            target: Some(target),
            out: tokio::fs::File::from_std(file),
            downloads: library.downloads_dir(user_id),
            name: d.name.clone(),
            hash: d.hash.clone(),
            user_id,
            library: library.clone(),
            resumed_from,
            written: resumed_from,
            hasher,
            _reservation: reservation,
            _entry: entry,
        })
    }

    /// Bytes already in place from an earlier, interrupted download: the transfer starts here.
    pub fn resumed_from(&self) -> u64 {
        self.resumed_from
    }

    fn io(&self, source: std::io::Error) -> FetchError {
        FetchError::Io {
            name: self.name.clone(),
            source,
        }
    }
}

/// Opens (or creates) the part file at `path` of a download of `size` bytes, for appending.
/// Returns it, whether it was there, the bytes it keeps and, if it keeps any, their hash.
fn open_part(
    path: &std::path::Path,
    size: u64,
) -> Result<(std::fs::File, bool, u64, Option<blake3::Hasher>), std::io::Error> {
    use std::io::Read;
    let existed = path.is_file();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let mut kept = file.metadata()?.len();
    if kept > size {
        // Not a beginning of this file: start again.
        file.set_len(0)?;
        kept = 0;
    }
    if kept == 0 {
        return Ok((file, existed, 0, None));
    }
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; super::COPY_CHUNK];
    let mut read = 0;
    while read < kept {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    Ok((file, existed, kept, Some(hasher)))
}

/// Runs blocking file work for `d` off the async runtime.
async fn blocking<T: Send + 'static>(
    d: &Download,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, FetchError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)
        .and_then(|done| done)
        .map_err(|source| FetchError::Io {
            name: d.name.clone(),
            source,
        })
}

impl Sink for ToDownloads {
    /// The name the file was saved under in `downloads/`.
    type Done = String;

    async fn write(&mut self, chunk: Vec<u8>) -> Result<(), FetchError> {
        use tokio::io::AsyncWriteExt;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&chunk);
        }
        self.out.write_all(&chunk).await.map_err(|e| self.io(e))?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    async fn finish(mut self) -> Result<String, FetchError> {
        use tokio::io::AsyncWriteExt;
        self.out.flush().await.map_err(|e| self.io(e))?;
        self.out.sync_all().await.map_err(|e| self.io(e))?;
        if let Some(hasher) = self.hasher.take() {
            if hasher.finalize().to_hex().as_str() != self.hash {
                if let Some(Target::Part { path, .. }) = self.target.take() {
                    let _ = tokio::fs::remove_file(&path).await;
                    self.library.entry_removed(self.user_id);
                }
                return Err(FetchError::BadPart {
                    name: self.name.clone(),
                    hash: self.hash.clone(),
                });
            }
        }
        let (downloads, name) = (self.downloads.clone(), self.name.clone());
        let (saved, new_entry) = match self.target.take() {
            Some(Target::Temp(temp)) => {
                let saved =
                    tokio::task::spawn_blocking(move || persist(temp, &downloads, &name)).await;
                (saved, true)
            }
            Some(Target::Part {
                path,
                _claim,
                existed,
            }) => {
                let part = path.clone();
                let saved =
                    tokio::task::spawn_blocking(move || persist_part(&part, &downloads, &name))
                        .await;
                if !matches!(saved, Ok(Ok(_))) {
                    // Complete and verified, but not renamed: kept for the next /get.
                    self.target = Some(Target::Part {
                        path,
                        _claim,
                        existed,
                    });
                }
                (saved, !existed)
            }
            None => return Err(self.io(std::io::Error::other("finished twice"))),
        };
        let saved = saved
            .map_err(std::io::Error::other)
            .and_then(|saved| saved)
            .map_err(|e| self.io(e))?;
        if new_entry {
            self.library.entry_added(self.user_id);
        }
        Ok(saved)
    }
}

impl Drop for ToDownloads {
    /// A part file left with verified bytes stays for the next `/get`, as one more entry.
    fn drop(&mut self) {
        let Some(Target::Part { path, existed, .. }) = &self.target else {
            return;
        };
        if self.written == 0 {
            let _ = std::fs::remove_file(path);
            if *existed {
                self.library.entry_removed(self.user_id);
            }
        } else if !*existed {
            self.library.entry_added(self.user_id);
        }
    }
}

/// Renames `temp` into `downloads` under a free name; returns that name.
fn persist(
    mut temp: tempfile::NamedTempFile,
    downloads: &std::path::Path,
    name: &str,
) -> std::io::Result<String> {
    // persist_noclobber refuses to replace a file that appeared meanwhile.
    for n in 0..MAX_NAME_ATTEMPTS {
        let numbered = numbered_name(name, n);
        match temp.persist_noclobber(downloads.join(&numbered)) {
            Ok(_) => return Ok(numbered),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => temp = e.file,
            Err(e) => return Err(e.error),
        }
    }
    Err(std::io::Error::other(format!(
        "{MAX_NAME_ATTEMPTS} files named like {name:?} already in downloads/"
    )))
}

/// Moves the part file `part` into `downloads` under a free name; returns that name.
fn persist_part(
    part: &std::path::Path,
    downloads: &std::path::Path,
    name: &str,
) -> std::io::Result<String> {
    // A hard link fails if the name is taken, rather than replace a file that appeared.
    for n in 0..MAX_NAME_ATTEMPTS {
        let numbered = numbered_name(name, n);
        match std::fs::hard_link(part, downloads.join(&numbered)) {
            Ok(()) => {
                std::fs::remove_file(part)?;
                return Ok(numbered);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "{MAX_NAME_ATTEMPTS} files named like {name:?} already in downloads/"
    )))
}

/// `song.flac`, `song (1).flac`, `song (2).flac`, ...
fn numbered_name(name: &str, n: usize) -> String {
    if n == 0 {
        return name.to_owned();
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem} ({n}).{ext}"),
        _ => format!("{name} ({n})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_carry_the_id_and_fit_a_file_name() {
        let d = |name: &str| Download {
            source: Source::Remote { holders: vec![] },
            name: name.into(),
            size: 1,
            hash: "0123456789abcdef".repeat(4),
        };
        assert_eq!(part_name(&d("a.flac")), "a.flac.0123456789ab.part");
        let long = part_name(&d(&"é".repeat(200)));
        assert_eq!(long.len(), 254, "{long}");
        assert!(long.ends_with(".0123456789ab.part"));
    }

    #[test]
    fn numbered_names() {
        assert_eq!(numbered_name("a.flac", 0), "a.flac");
        assert_eq!(numbered_name("a.flac", 2), "a (2).flac");
        assert_eq!(numbered_name(".hidden", 1), ".hidden (1)");
        assert_eq!(numbered_name("noext", 1), "noext (1)");
    }
}
