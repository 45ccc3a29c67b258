//! The verified encoding of a file between instances: BLAKE3 trees (bao-tree) in chunk groups
//! of [`CHUNK_GROUP_BYTES`].
//!
//! The sender keeps each shared file's *outboard* (the hash pairs of its tree, in pre-order,
//! 64 bytes per chunk group: about 4 MiB per GiB) in [`Outboards`], beside the database; it
//! [`encode`]s a range of the file as a size prefix and then, in pre-order, the parents and
//! leaves that cover the range. The receiver [`decode`]s that stream against the file id (the
//! root of the tree is the plain BLAKE3 hash of the whole file, so ids are the same as
//! everywhere else) and hands on a chunk group's bytes only once they checked out: a wrong
//! byte ends the stream at its chunk group, with everything before it verified.
//!
//! Nothing here touches a socket: readers and writers come in, so unit tests run both ends
//! in memory.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use bao_tree::io::outboard::PreOrderOutboard;
use bao_tree::io::sync::{encode_ranges_validated, CreateOutboard, DecodeResponseIter};
use bao_tree::io::{BaoContentItem, DecodeError, EncodeError};
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};
use bytes::Bytes;

/// Chunk groups of 2^4 BLAKE3 chunks of 1 KiB: the unit that is verified (and sent) at once.
pub const CHUNK_GROUP_LOG: u8 = 4;
/// Bytes in a chunk group: 16 KiB.
pub const CHUNK_GROUP_BYTES: u64 = 1024 << CHUNK_GROUP_LOG;
/// Bytes of the size prefix: the file's size, unsigned 64-bit little-endian.
pub const SIZE_PREFIX_BYTES: usize = 8;

/// The chunk group geometry every instance uses.
pub fn block_size() -> BlockSize {
    BlockSize::from_chunk_log(CHUNK_GROUP_LOG)
}

/// The tree of a file of `size` bytes.
pub fn tree(size: u64) -> BaoTree {
    BaoTree::new(size, block_size())
}

/// The chunks sent for a request from byte `offset` to the end: from the start of the chunk
/// group that holds `offset` (a group is verified whole).
pub fn ranges_from(offset: u64) -> ChunkRanges {
    let group_start = offset / CHUNK_GROUP_BYTES * CHUNK_GROUP_BYTES;
    ChunkRanges::from(ChunkNum::full_chunks(group_start)..)
}

/// The name prefix of an outboard being made (a temporary file in the outboards folder).
const MAKING_PREFIX: &str = ".make-";

/// A file id as a BLAKE3 hash: 64 lowercase hex digits.
pub fn parse_id(id: &str) -> Option<blake3::Hash> {
    if id.len() != 64 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    blake3::Hash::from_hex(id).ok()
}

#[derive(Debug, thiserror::Error)]
pub enum OutboardError {
    /// The bytes the outboard was made from are not the file with that id.
    #[error("the bytes of {0} do not hash to its id")]
    NotTheFile(String),
    #[error("cannot make the outboard of {id}: {source}")]
    Io { id: String, source: io::Error },
}

/// The outboards of files shared here: `DIR/<id>` holds the pre-order hash pairs (no size
/// prefix) of the file with that id and its size. Keyed by content, so users sharing the
/// same bytes share one outboard. Written to a temporary file and renamed into place, so a
/// reader sees a whole outboard or none. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outboards {
    /// `DATA_DIR/outboards`.
    dir: PathBuf,
}

impl Outboards {
    pub fn new(dir: PathBuf) -> Outboards {
        Outboards { dir }
    }

    fn path(&self, id: &blake3::Hash) -> PathBuf {
        self.dir.join(id.to_hex().as_str())
    }

    /// The outboard of the file `id` of `size` bytes, whose bytes `data` holds; made from
    /// `data` first if missing or not of the right length. Blocking.
    pub fn open_or_make(
        &self,
        id: &blake3::Hash,
        size: u64,
        data: &File,
    ) -> Result<PreOrderOutboard<File>, OutboardError> {
        let want = tree(size).outboard_size();
        let io = |source| OutboardError::Io {
            id: id.to_hex().to_string(),
            source,
        };
        match File::open(self.path(id)) {
            Ok(file) if file.metadata().map_err(io)?.len() == want => {
                return Ok(PreOrderOutboard {
                    root: *id,
                    tree: tree(size),
                    data: file,
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        self.make(id, size, At { file: data, pos: 0 })?;
        let file = File::open(self.path(id)).map_err(io)?;
        Ok(PreOrderOutboard {
            root: *id,
            tree: tree(size),
            data: file,
        })
    }

    /// Makes (or makes again) the outboard of the file `id` of `size` bytes from its bytes,
    /// read from `data`; refused unless they hash to `id`. Blocking.
    pub fn make(&self, id: &blake3::Hash, size: u64, data: impl Read) -> Result<(), OutboardError> {
        let hex = id.to_hex().to_string();
        let io = |source| OutboardError::Io {
            id: hex.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let temp = tempfile::Builder::new()
            .prefix(MAKING_PREFIX)
            .tempfile_in(&self.dir)
            .map_err(io)?;
        let mut outboard = PreOrderOutboard {
            root: blake3::hash(b""),
            tree: tree(size),
            data: temp.as_file().try_clone().map_err(io)?,
        };
        outboard
            .init_from(std::io::BufReader::with_capacity(
                super::COPY_CHUNK,
                data.take(size),
            ))
            .map_err(io)?;
        if outboard.root != *id {
            return Err(OutboardError::NotTheFile(hex));
        }
        temp.as_file().sync_all().map_err(io)?;
        temp.persist(self.path(id)).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Whether the outboard of the file `id` of `size` bytes is here, whole. Blocking.
    pub fn has(&self, id: &blake3::Hash, size: u64) -> bool {
        std::fs::metadata(self.path(id)).is_ok_and(|m| m.len() == tree(size).outboard_size())
    }

    /// The ids of the outboards kept; outboards left half made by a crash are removed.
    /// Blocking.
    pub fn list(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ids = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(MAKING_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
            } else if parse_id(&name).is_some() {
                ids.push(name);
            }
        }
        ids
    }

    /// Removes the outboard of `id` (one found not to match its file is made again next time).
    pub fn forget(&self, id: &blake3::Hash) {
        let _ = std::fs::remove_file(self.path(id));
    }
}

/// A file read from a position with positioned reads, leaving the handle's own offset alone.
struct At<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Why an encoding stopped.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The file's bytes no longer match its outboard (edited in place, or the outboard is
    /// damaged): nothing past the last good chunk group was sent.
    #[error("the file's bytes do not match its id at byte {0}")]
    Mismatch(u64),
    /// The writer failed (the receiver went away) or the file could not be read.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Writes the size prefix and the verified encoding of the file `data` (whose outboard is
/// `outboard`) from the chunk group holding `offset` to its end. Every chunk group is checked
/// against the outboard before it is written. Blocking.
pub fn encode(
    data: &File,
    outboard: &PreOrderOutboard<File>,
    offset: u64,
    mut out: impl Write,
) -> Result<(), SendError> {
    out.write_all(&outboard.tree.size().to_le_bytes())?;
    match encode_ranges_validated(data, outboard, &ranges_from(offset), &mut out) {
        Ok(()) => {}
        Err(EncodeError::LeafHashMismatch(chunk)) => {
            return Err(SendError::Mismatch(chunk.to_bytes()))
        }
        Err(EncodeError::ParentHashMismatch(node)) => {
            return Err(SendError::Mismatch(node.mid().to_bytes()))
        }
        Err(EncodeError::SizeMismatch) => return Err(SendError::Mismatch(0)),
        Err(EncodeError::Io(e)) => return Err(SendError::Io(e)),
        Err(e) => return Err(SendError::Io(io::Error::other(e.to_string()))),
    }
    out.flush()?;
    Ok(())
}

/// Why a decoding stopped before the end of the file.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The sender's bytes do not match the id: the chunk group starting at `at` (the first
    /// byte not handed on) is wrong.
    #[error("bad data at byte {at}")]
    Corrupt { at: u64 },
    /// The size prefix is not the file's size.
    #[error("the sender says the file has {said} bytes, not {size}")]
    WrongSize { said: u64, size: u64 },
    /// The stream ended (or failed) before the end of the file; `at` is the first byte not
    /// handed on.
    #[error("the stream broke off at byte {at}: {source}")]
    Broken { at: u64, source: io::Error },
    /// The receiver of the bytes took no more.
    #[error("stopped by the receiver")]
    Stopped,
}

/// Reads the size prefix and the encoding of the file `id` of `size` bytes from `offset` to
/// its end from `encoded`, and hands each verified piece at or after `offset` to `take`, in
/// order, until `take` returns false. Returns once every byte to the end has been handed
/// on. Blocking.
pub fn decode(
    mut encoded: impl Read,
    id: blake3::Hash,
    size: u64,
    offset: u64,
    mut take: impl FnMut(Bytes) -> bool,
) -> Result<(), ReceiveError> {
    let mut prefix = [0u8; SIZE_PREFIX_BYTES];
    encoded
        .read_exact(&mut prefix)
        .map_err(|source| ReceiveError::Broken { at: offset, source })?;
    let said = u64::from_le_bytes(prefix);
    if said != size {
        return Err(ReceiveError::WrongSize { said, size });
    }
    let ranges = ranges_from(offset);
    // The first byte not handed on yet.
    let mut at = offset;
    for item in DecodeResponseIter::new(id, tree(size), encoded, &ranges) {
        let leaf = match item {
            Ok(BaoContentItem::Parent(_)) => continue,
            Ok(BaoContentItem::Leaf(leaf)) => leaf,
            Err(DecodeError::LeafHashMismatch(_) | DecodeError::ParentHashMismatch(_)) => {
                return Err(ReceiveError::Corrupt { at })
            }
            Err(DecodeError::Io(source)) => return Err(ReceiveError::Broken { at, source }),
            Err(DecodeError::LeafNotFound(_) | DecodeError::ParentNotFound(_)) => {
                return Err(ReceiveError::Broken {
                    at,
                    source: ended_early(),
                })
            }
        };
        let end = leaf.offset + leaf.data.len() as u64;
        if end <= at {
            continue;
        }
        let skip = at.saturating_sub(leaf.offset) as usize;
        let piece = leaf.data.slice(skip..);
        at = end;
        if !take(piece) {
            return Err(ReceiveError::Stopped);
        }
    }
    if at < size {
        return Err(ReceiveError::Broken {
            at,
            source: ended_early(),
        });
    }
    Ok(())
}

/// Reads the whole encoding of a file of `size` bytes (offset 0) **without checking a single
/// hash**: parents are skipped, leaves handed on as they come. For `--dev` benchmarks only
/// (`federation.dev_skip_verify`): it measures what verification costs. Never in service.
pub fn decode_unverified(
    mut encoded: impl Read,
    size: u64,
    mut take: impl FnMut(Bytes) -> bool,
) -> Result<(), ReceiveError> {
    let mut prefix = [0u8; SIZE_PREFIX_BYTES];
    encoded
        .read_exact(&mut prefix)
        .map_err(|source| ReceiveError::Broken { at: 0, source })?;
    let said = u64::from_le_bytes(prefix);
    if said != size {
        return Err(ReceiveError::WrongSize { said, size });
    }
    // The pre-order walk of the tree: (start, len) of the subtrees still to read.
    let mut todo = vec![(0u64, size)];
    let mut parent = [0u8; 64];
    while let Some((start, len)) = todo.pop() {
        let broken = |source| ReceiveError::Broken { at: start, source };
        if len <= CHUNK_GROUP_BYTES {
            let mut leaf = vec![0u8; len as usize];
            encoded.read_exact(&mut leaf).map_err(broken)?;
            if !take(Bytes::from(leaf)) {
                return Err(ReceiveError::Stopped);
            }
            continue;
        }
        encoded.read_exact(&mut parent).map_err(broken)?;
        // BLAKE3: the left subtree holds the largest power of two of 1 KiB chunks that
        // leaves at least one byte on the right.
        let chunks = len.div_ceil(1024);
        let left = (1u64 << (63 - (chunks - 1).leading_zeros())) * 1024;
        todo.push((start + left, len - left));
        todo.push((start, left));
    }
    Ok(())
}

/// A stream that ended before the end of the file: the sender went away or cut it.
fn ended_early() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the stream ended before the end of the file (the instance went away or cut it)",
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_unverified_reader_walks_the_same_encoding_and_checks_nothing() {
        for len in [0, 1, 1024, 16_384, 16_385, 40_000, 65_536, 100_000, 300_001] {
            let bytes = tape(len);
            let mut got = Vec::new();
            decode_unverified(&encoded(&bytes, 0)[..], len as u64, |piece| {
                got.extend_from_slice(&piece);
                true
            })
            .unwrap();
            assert!(got == bytes, "len {len}: {} bytes", got.len());
        }
        // It checks nothing: a flipped byte goes through (which is why it is dev only).
        let bytes = tape(100_000);
        let mut wire = encoded(&bytes, 0);
        let last = wire.len() - 1;
        wire[last] ^= 1;
        let mut got = Vec::new();
        decode_unverified(&wire[..], 100_000, |p| {
            got.extend_from_slice(&p);
            true
        })
        .unwrap();
        assert!(got != bytes);
    }

    /// Polls `cond` (a file made by a background task) for at most 10 s.
    pub(crate) fn wait_for(cond: impl Fn() -> bool) -> bool {
        for _ in 0..1000 {
            if cond() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        cond()
    }

    /// Bytes that differ from chunk to chunk.
    fn tape(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 1024) as u8).collect()
    }

    /// `bytes` written to a file in `dir`, with its outboard made in `dir/outboards`.
    fn shared(dir: &std::path::Path, bytes: &[u8]) -> (File, PreOrderOutboard<File>) {
        let path = dir.join("data");
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        let outboards = Outboards::new(dir.join("outboards"));
        let outboard = outboards
            .open_or_make(&blake3::hash(bytes), bytes.len() as u64, &file)
            .unwrap();
        (file, outboard)
    }

    /// The encoding of `bytes` from `offset`.
    fn encoded(bytes: &[u8], offset: u64) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let (file, outboard) = shared(dir.path(), bytes);
        let mut out = Vec::new();
        encode(&file, &outboard, offset, &mut out).unwrap();
        out
    }

    /// What a receiver hands on from `stream` for the file `bytes` from `offset`.
    fn received(stream: &[u8], bytes: &[u8], offset: u64) -> (Vec<u8>, Result<(), ReceiveError>) {
        let mut got = Vec::new();
        let result = decode(
            stream,
            blake3::hash(bytes),
            bytes.len() as u64,
            offset,
            |b| {
                got.extend_from_slice(&b);
                true
            },
        );
        (got, result)
    }

    #[test]
    fn a_file_round_trips_whole_and_from_any_offset() {
        let sizes = [
            0,
            1,
            1024,
            16 * 1024,
            16 * 1024 + 1,
            100_000,
            300 * 1024 + 5,
        ];
        for size in sizes {
            let bytes = tape(size);
            for offset in [0, 1, 16 * 1024 - 1, 16 * 1024, 50_000, size as u64] {
                if offset > size as u64 {
                    continue;
                }
                let stream = encoded(&bytes, offset);
                let (got, result) = received(&stream, &bytes, offset);
                result.unwrap_or_else(|e| panic!("size {size} offset {offset}: {e}"));
                assert!(
                    got == bytes[offset as usize..],
                    "size {size} offset {offset}: {} bytes",
                    got.len()
                );
            }
        }
    }

    #[test]
    fn an_empty_file_is_the_size_prefix_alone() {
        assert_eq!(encoded(&[], 0), 0u64.to_le_bytes());
    }

    #[test]
    fn the_outboard_is_64_bytes_a_chunk_group_and_its_root_is_the_plain_blake3() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tape(1 << 20);
        let (_, outboard) = shared(dir.path(), &bytes);
        assert_eq!(outboard.root, blake3::hash(&bytes));
        let len = outboard.data.metadata().unwrap().len();
        assert_eq!(len, (64 - 1) * 64, "64 groups, 63 parents");
    }

    #[test]
    fn an_outboard_is_made_only_from_the_bytes_of_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tape(50_000);
        let outboards = Outboards::new(dir.path().join("outboards"));
        let err = outboards
            .make(&blake3::hash(b"other"), bytes.len() as u64, &bytes[..])
            .unwrap_err();
        assert!(matches!(err, OutboardError::NotTheFile(_)), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("outboards"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_damaged_outboard_on_disk_is_refused_by_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tape(200_000);
        let (file, outboard) = shared(dir.path(), &bytes);
        let path = dir
            .path()
            .join("outboards")
            .join(blake3::hash(&bytes).to_hex().as_str());
        let mut damaged = std::fs::read(&path).unwrap();
        damaged[70] ^= 1;
        std::fs::write(&path, damaged).unwrap();
        let outboard = PreOrderOutboard {
            data: File::open(&path).unwrap(),
            ..outboard
        };
        let err = encode(&file, &outboard, 0, Vec::new()).unwrap_err();
        assert!(matches!(err, SendError::Mismatch(_)), "{err}");
    }

    #[test]
    fn a_file_changed_under_its_outboard_is_refused_by_the_sender_at_the_changed_group() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tape(100_000);
        let (_, outboard) = shared(dir.path(), &bytes);
        let mut changed = bytes.clone();
        changed[40_000] ^= 1;
        std::fs::write(dir.path().join("data"), &changed).unwrap();
        let file = File::open(dir.path().join("data")).unwrap();
        let mut out = Vec::new();
        let err = encode(&file, &outboard, 0, &mut out).unwrap_err();
        assert!(matches!(err, SendError::Mismatch(32_768)), "{err}");
        // What was written before the bad group still decodes, up to it.
        let (got, result) = received(&out, &bytes, 0);
        assert!(
            matches!(result, Err(ReceiveError::Broken { at: 32_768, .. })),
            "{result:?}"
        );
        assert!(got == bytes[..32_768]);
    }

    /// The encoding a lying sender makes of `bytes` with one byte flipped at `bad`.
    fn lying(bytes: &[u8], bad: usize, offset: u64) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let (_, outboard) = shared(dir.path(), bytes);
        let mut wrong = bytes.to_vec();
        wrong[bad] ^= 0x80;
        let mut out = (bytes.len() as u64).to_le_bytes().to_vec();
        bao_tree::io::sync::encode_ranges(&wrong, &outboard, &ranges_from(offset), &mut out)
            .unwrap();
        out
    }

    #[test]
    fn a_corrupted_byte_ends_the_stream_at_its_chunk_group_with_only_verified_bytes_handed_on() {
        let bytes = tape(300 * 1024 + 5);
        for (bad, group_start) in [
            (0, 0),
            (16_384, 16_384),
            (100_000, 98_304),
            (307_204, 294_912),
        ] {
            let stream = lying(&bytes, bad, 0);
            let (got, result) = received(&stream, &bytes, 0);
            match result {
                Err(ReceiveError::Corrupt { at }) => assert_eq!(at, group_start, "bad {bad}"),
                other => panic!("bad {bad}: {other:?}"),
            }
            assert!(
                got == bytes[..group_start as usize],
                "bad {bad}: {} bytes",
                got.len()
            );
        }
        // From an offset, the first bad group is found the same way.
        let stream = lying(&bytes, 200_000, 150_000);
        let (got, result) = received(&stream, &bytes, 150_000);
        assert!(
            matches!(result, Err(ReceiveError::Corrupt { at: 196_608 })),
            "{result:?}"
        );
        assert!(got == bytes[150_000..196_608]);
    }

    #[test]
    fn a_damaged_parent_hash_is_caught_before_the_bytes_under_it() {
        let bytes = tape(100_000);
        let mut stream = encoded(&bytes, 0);
        // The root's hash pair comes right after the size prefix.
        stream[SIZE_PREFIX_BYTES + 40] ^= 1;
        let (got, result) = received(&stream, &bytes, 0);
        assert!(
            matches!(result, Err(ReceiveError::Corrupt { at: 0 })),
            "{result:?}"
        );
        assert!(got.is_empty());
    }

    #[test]
    fn a_stream_cut_short_hands_on_whole_groups_and_says_where_it_broke() {
        let bytes = tape(100_000);
        let stream = encoded(&bytes, 0);
        let (got, result) = received(&stream[..stream.len() / 2], &bytes, 0);
        let Err(ReceiveError::Broken { at, .. }) = result else {
            panic!("{result:?}");
        };
        assert_eq!(at as usize, got.len());
        assert_eq!(at % CHUNK_GROUP_BYTES, 0);
        assert!(got == bytes[..got.len()]);
    }

    #[test]
    fn a_wrong_size_prefix_is_refused_before_any_byte() {
        let bytes = tape(20_000);
        let mut stream = encoded(&bytes, 0);
        stream[..8].copy_from_slice(&19_999u64.to_le_bytes());
        let (got, result) = received(&stream, &bytes, 0);
        assert!(matches!(
            result,
            Err(ReceiveError::WrongSize {
                said: 19_999,
                size: 20_000
            })
        ));
        assert!(got.is_empty());
    }

    #[test]
    fn another_files_encoding_is_refused_before_any_byte() {
        let bytes = tape(40_000);
        let mut other = bytes.clone();
        other[39_999] ^= 1;
        let stream = encoded(&other, 0);
        let (got, result) = received(&stream, &bytes, 0);
        assert!(
            matches!(result, Err(ReceiveError::Corrupt { at: 0 })),
            "{result:?}"
        );
        assert!(got.is_empty());
    }

    #[test]
    fn ids_are_64_lowercase_hex_digits() {
        let id = blake3::hash(b"x").to_hex().to_string();
        assert_eq!(parse_id(&id), Some(blake3::hash(b"x")));
        assert_eq!(parse_id(&id.to_uppercase()), None);
        assert_eq!(parse_id(&id[1..]), None);
        assert_eq!(parse_id(&format!("{}g", &id[1..])), None);
    }
}
