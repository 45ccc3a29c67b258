//! The one loop every download's bytes pass through: read a chunk, hash it, hand it on; at
//! the end, compare with the id.

use super::{Download, FetchError, COPY_CHUNK};
use crate::library::Opened;

/// A download's bytes, read in chunks of at most [`COPY_CHUNK`] and proven against its id.
///
/// No chunk is handed on past the file's catalogued size, and the last call fails with
/// [`FetchError::Changed`] unless the BLAKE3 of every byte read is the download's hash.
/// A receiver that must not keep unproven bytes (a file in `downloads/`) makes them final
/// only after [`VerifiedReader::next_chunk`] returned `None`.
///
/// Another kind of source is one more variant of `Chunks` and a constructor: the bytes it
/// yields pass through the same size bound and hash. A source that can prove each chunk on
/// its own (a BLAKE3 verified stream from another instance) fails on the first bad chunk,
/// before handing it on.
pub struct VerifiedReader {
    /// Where the chunks come from.
    chunks: Chunks,
    /// The file's name, for errors.
    name: String,
    /// The bytes expected; reading past them fails at once.
    size: u64,
    /// The hex BLAKE3 expected: the download's id.
    hash: String,
    /// The hash of what was read so far.
    hasher: blake3::Hasher,
    /// Bytes read so far.
    read: u64,
    /// The end was reached and proven.
    done: bool,
}

/// The raw bytes under a [`VerifiedReader`].
enum Chunks {
    /// A file of this instance, opened by [`crate::library::Library::open_download`].
    Local(tokio::fs::File),
}

impl VerifiedReader {
    /// Reads the local file `opened`, which holds (or held, when it was opened) `d`'s bytes.
    pub(super) fn local(d: &Download, opened: Opened) -> VerifiedReader {
        VerifiedReader {
            chunks: Chunks::Local(tokio::fs::File::from_std(opened.into_file())),
            name: d.name.clone(),
            size: d.size,
            hash: d.hash.clone(),
            hasher: blake3::Hasher::new(),
            read: 0,
            done: false,
        }
    }

    /// The next chunk, never empty; `None` once every byte was read and matched the id.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, FetchError> {
        if self.done {
            return Ok(None);
        }
        let chunk = match &mut self.chunks {
            Chunks::Local(file) => read_chunk(file).await,
        }
        .map_err(|source| FetchError::Read {
            name: self.name.clone(),
            source,
        })?;
        if chunk.is_empty() {
            if self.hasher.finalize().to_hex().as_str() != self.hash {
                return Err(self.changed());
            }
            self.done = true;
            return Ok(None);
        }
        self.read += chunk.len() as u64;
        if self.read > self.size {
            return Err(self.changed());
        }
        self.hasher.update(&chunk);
        Ok(Some(chunk))
    }

    fn changed(&self) -> FetchError {
        FetchError::Changed {
            name: self.name.clone(),
            hash: self.hash.clone(),
        }
    }
}

/// Up to [`COPY_CHUNK`] bytes from `file`; empty at its end.
async fn read_chunk(file: &mut tokio::fs::File) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut chunk = vec![0u8; COPY_CHUNK];
    let n = file.read(&mut chunk).await?;
    chunk.truncate(n);
    Ok(chunk)
}
