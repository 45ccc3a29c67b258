//! The receiver of a `/get`: a file in the user's `downloads/`, written in `.partial/` and
//! renamed into place only once every byte matched the id.

use std::path::PathBuf;

use super::{Download, FetchError, Sink};
use crate::library::Library;
use crate::quota::{EntrySlot, QuotaError, Reservation};

/// How many `name (n)` variants are tried before giving up.
const MAX_NAME_ATTEMPTS: usize = 1000;

/// A download on its way into a user's `downloads/`. Its bytes are reserved in the quota and
/// its entry counted from [`ToDownloads::create`] until it is in place or dropped; dropped
/// unfinished, it leaves nothing behind.
pub struct ToDownloads {
    /// The file in `.partial/`, removed if dropped.
    temp: tempfile::NamedTempFile,
    /// The same file, written asynchronously.
    out: tokio::fs::File,
    /// The user's `downloads/`.
    downloads: PathBuf,
    /// The name to save under (or `name (1)` and so on if taken).
    name: String,
    user_id: i64,
    /// Told of the new entry once the file is in place.
    library: Library,
    /// Held until the file is in `downloads/`: concurrent `/get`s cannot overfill the quota.
    _reservation: Reservation,
    /// Room for one more entry, held likewise.
    _entry: EntrySlot,
}

impl ToDownloads {
    /// Makes room for `d` in `user_id`'s `downloads/`: within the file size bound, its bytes
    /// reserved in the quota, a free entry, the user's folders, a temporary file.
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
        let reservation = library
            .reserve(user_id, d.size)
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
        let io = |source| FetchError::Io {
            name: d.name.clone(),
            source,
        };
        library.prepare(user_id).await.map_err(io)?;
        let partial = library.partial_dir(user_id);
        let temp = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix(".get-")
                .tempfile_in(partial)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|made| made)
        .map_err(io)?;
        let out = temp.as_file().try_clone().map_err(io)?;
        Ok(ToDownloads {
            temp,
            out: tokio::fs::File::from_std(out),
            downloads: library.downloads_dir(user_id),
            name: d.name.clone(),
            user_id,
            library: library.clone(),
            _reservation: reservation,
            _entry: entry,
        })
    }

    fn io(&self, source: std::io::Error) -> FetchError {
        FetchError::Io {
            name: self.name.clone(),
            source,
        }
    }
}

impl Sink for ToDownloads {
    /// The name the file was saved under in `downloads/`.
    type Done = String;

    async fn write(&mut self, chunk: Vec<u8>) -> Result<(), FetchError> {
        use tokio::io::AsyncWriteExt;
        self.out.write_all(&chunk).await.map_err(|e| self.io(e))
    }

    async fn finish(mut self) -> Result<String, FetchError> {
        use tokio::io::AsyncWriteExt;
        self.out.flush().await.map_err(|e| self.io(e))?;
        self.out.sync_all().await.map_err(|e| self.io(e))?;
        let (temp, downloads, name) = (self.temp, self.downloads, self.name.clone());
        let saved = tokio::task::spawn_blocking(move || persist(temp, &downloads, &name))
            .await
            .map_err(std::io::Error::other)
            .and_then(|saved| saved)
            .map_err(|source| FetchError::Io {
                name: self.name.clone(),
                source,
            })?;
        self.library.entry_added(self.user_id);
        Ok(saved)
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
    fn numbered_names() {
        assert_eq!(numbered_name("a.flac", 0), "a.flac");
        assert_eq!(numbered_name("a.flac", 2), "a (2).flac");
        assert_eq!(numbered_name(".hidden", 1), ".hidden (1)");
        assert_eq!(numbered_name("noext", 1), "noext (1)");
    }
}
