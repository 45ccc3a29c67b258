//! The one loop every download's bytes pass through: read a chunk, hash it, hand it on; at
//! the end, compare with the id.

use super::remote::Pieces;
use super::{Download, FetchError, COPY_CHUNK};
use crate::library::Opened;

/// A download's bytes, read in chunks of at most [`COPY_CHUNK`] and proven against its id.
///
/// No chunk is handed on past the file's catalogued size, and the last call fails with
/// [`FetchError::Changed`] unless the BLAKE3 of every byte read is the download's hash.
/// A receiver that must not keep unproven bytes (a file in `downloads/`) makes them final
/// only after [`VerifiedReader::next_chunk`] returned `None`.
///
/// A file from another instance proves each chunk group on its own (the BLAKE3 verified
/// stream of `remote.rs`) before it is queued here, and fails at the first bad one, before
/// handing it on; its bytes pass through the same size bound.
///
/// A reader opened at an offset hands on only the bytes from there; a local file's bytes
/// before it are still read and hashed (the hash covers the whole file).
pub struct VerifiedReader {
    /// Where the chunks come from.
    chunks: Chunks,
    /// The file's name, for errors.
    name: String,
    /// The bytes expected; reading past them fails at once.
    size: u64,
    /// The hex BLAKE3 expected: the download's id.
    hash: String,
    /// The hash of what was read so far (a local file).
    hasher: blake3::Hasher,
    /// Bytes read so far, from the start of the file.
    read: u64,
    /// The first byte handed on.
    offset: u64,
    /// The end was reached and proven.
    done: bool,
}

/// The raw bytes under a [`VerifiedReader`].
enum Chunks {
    /// A file of this instance, opened by [`crate::library::Library::open_download`].
    Local(tokio::fs::File),
    /// Chunk groups from another instance, each verified before it was queued.
    Remote(Pieces),
}

impl VerifiedReader {
    /// Reads the local file `opened`, which holds (or held, when it was opened) `d`'s bytes,
    /// handing on those from `offset`.
    pub(super) fn local(d: &Download, opened: Opened, offset: u64) -> VerifiedReader {
        VerifiedReader::new(
            d,
            Chunks::Local(tokio::fs::File::from_std(opened.into_file())),
            offset,
        )
    }

    /// Reads `d`'s bytes from `offset` as another instance sends them, verified.
    pub(super) fn remote(d: &Download, pieces: Pieces, offset: u64) -> VerifiedReader {
        VerifiedReader {
            read: offset,
            ..VerifiedReader::new(d, Chunks::Remote(pieces), offset)
        }
    }

    fn new(d: &Download, chunks: Chunks, offset: u64) -> VerifiedReader {
        VerifiedReader {
            chunks,
            name: d.name.clone(),
            size: d.size,
            hash: d.hash.clone(),
            hasher: blake3::Hasher::new(),
            read: 0,
            offset,
            done: false,
        }
    }

    /// The next chunk, never empty; `None` once every byte was read and matched the id.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, FetchError> {
        if self.done {
            return Ok(None);
        }
        match &mut self.chunks {
            Chunks::Local(_) => self.next_local().await,
            Chunks::Remote(_) => self.next_remote().await,
        }
    }

    async fn next_local(&mut self) -> Result<Option<Vec<u8>>, FetchError> {
        let Chunks::Local(file) = &mut self.chunks else {
            return Ok(None);
        };
        loop {
            let chunk = read_chunk(file).await.map_err(|source| FetchError::Read {
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
            let start = self.read;
            self.read += chunk.len() as u64;
            if self.read > self.size {
                return Err(self.changed());
            }
            self.hasher.update(&chunk);
            if self.read <= self.offset {
                // Before the offset: hashed, not handed on.
                continue;
            }
            let skip = self.offset.saturating_sub(start) as usize;
            return Ok(Some(if skip == 0 {
                chunk
            } else {
                chunk[skip..].to_vec()
            }));
        }
    }

    async fn next_remote(&mut self) -> Result<Option<Vec<u8>>, FetchError> {
        let Chunks::Remote(pieces) = &mut self.chunks else {
            return Ok(None);
        };
        match pieces.recv().await {
            Some(Ok(piece)) => {
                self.read += piece.len() as u64;
                if self.read > self.size {
                    return Err(self.changed());
                }
                Ok(Some(piece))
            }
            Some(Err(e)) => {
                self.done = true;
                Err(e)
            }
            None if self.read == self.size => {
                self.done = true;
                Ok(None)
            }
            // The decoding task ended without saying why (it panicked).
            None => Err(FetchError::Read {
                name: self.name.clone(),
                source: std::io::Error::other(format!(
                    "the transfer stopped at byte {} of {}",
                    self.read, self.size
                )),
            }),
        }
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
