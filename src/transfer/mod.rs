//! Downloads: a shared file chosen by a user, where its bytes are, and how they travel.
//!
//! A [`Download`] names a file by its content ([`Download::hash`], the network id) and says
//! where its bytes are ([`Source`]): in a library on this instance, or on other instances
//! (a relay over HTTP, verified chunk group by chunk group: [`encoding`], `remote.rs`).
//!
//! Every download runs one loop, [`copy`]: [`Sources::open`] gives a [`VerifiedReader`]
//! (a local file's bytes hashed as they are read and the id checked at the end; a remote
//! file's chunk groups each checked against the id before they are handed on), and a
//! [`Sink`] takes the chunks: a file in `downloads/` ([`ToDownloads`], for `/get` in a shell)
//! or an exec channel's stdout (in the SSH adapter).
//!
//! **Invariant:** a local file is opened only through
//! [`Library::open_download`](crate::library::Library::open_download), which proves it is
//! shared now and is the catalogued file before a byte is read.

mod downloads;
pub mod encoding;
mod manager;
mod remote;
pub use remote::Verify;
mod slots;
mod throttle;
mod verified;

use std::future::Future;

use crate::catalog::CatalogFile;
use crate::fed::client::Client;
use crate::library::Library;
use crate::quota::QuotaError;
use crate::store::StoreError;
pub use downloads::{part_name, ToDownloads};
pub use manager::{
    Busy, Finished, NoSuchTransfer, TransferEvent, Transfers, MAX_TRANSFERS, PROGRESS_INTERVAL,
    TRANSFER_EVENTS,
};
pub use slots::{LineFull, Slot, Slots, MAX_WAITING_PER_USER};
pub use throttle::{Throttle, THROTTLE_BURST};
pub use verified::VerifiedReader;

/// Bytes read and written at a time when copying or streaming a file.
pub const COPY_CHUNK: usize = 256 * 1024;

/// A shared file chosen for download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// Where the bytes are.
    pub source: Source,
    /// The file name, as the user saw it and as `downloads/` will call it.
    pub name: String,
    pub size: u64,
    /// Hex BLAKE3 of the content; checked as the bytes are copied.
    pub hash: String,
}

/// Where a download's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// In the `library/` of a user of this instance.
    Local {
        owner_id: i64,
        /// Path inside the owner's `library/`.
        path: String,
    },
    /// On other instances, fetched through this one (the downloader never connects to them).
    Remote {
        /// The domains of the instances that hold the file, the chosen owner's first; the
        /// next is asked when one fails (`remote::open_any`).
        holders: Vec<String>,
    },
}

/// Most instances one download may ask in turn.
pub const MAX_HOLDERS: usize = 8;

impl Download {
    /// The download of `chosen`, knowing every shared copy of its content (`copies`, as
    /// `Catalog::copies` finds them): a copy on this instance is read here, whoever the
    /// chosen owner is; else the instances holding it are asked in turn, the chosen one
    /// first (at most [`MAX_HOLDERS`]).
    pub fn of_copies(chosen: &CatalogFile, copies: &[CatalogFile]) -> Download {
        let same = |f: &&CatalogFile| f.id == chosen.id;
        if chosen.owner_id.is_none() {
            if let Some(local) = copies.iter().filter(same).find(|f| f.owner_id.is_some()) {
                return Download {
                    name: chosen.name.clone(),
                    ..Download::from(local)
                };
            }
        }
        let mut download = Download::from(chosen);
        if let Source::Remote { holders } = &mut download.source {
            for domain in copies
                .iter()
                .filter(same)
                .filter_map(|f| f.owner.domain.as_ref())
            {
                if holders.len() >= MAX_HOLDERS {
                    break;
                }
                if !holders.iter().any(|h| h.eq_ignore_ascii_case(domain)) {
                    holders.push(domain.clone());
                }
            }
        }
        download
    }
}

/// A catalogued file as a download: a local user's, or one on the owner's instance.
impl From<&CatalogFile> for Download {
    fn from(f: &CatalogFile) -> Download {
        let source = match f.owner_id {
            Some(owner_id) => Source::Local {
                owner_id,
                path: f.path.clone(),
            },
            None => Source::Remote {
                holders: f.owner.domain.iter().cloned().collect(),
            },
        };
        Download {
            source,
            name: f.name.clone(),
            size: f.size,
            hash: f.id.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{name:?} is {size} bytes; the largest file allowed is {max} bytes")]
    TooLarge { name: String, size: u64, max: u64 },
    #[error("{name:?} ({size} bytes) does not fit in your quota: {used} of {quota} bytes used")]
    OverQuota {
        name: String,
        size: u64,
        used: u64,
        quota: u64,
    },
    #[error("{name:?} changed on its owner's disk (its content no longer matches id {hash}); nothing was saved")]
    Changed { name: String, hash: String },
    #[error("{name:?} is no longer shared: its owner unshared, replaced, renamed or removed it; search again")]
    NotShared { name: String },
    #[error("{name:?} changed since it was shared (its bytes no longer match id {hash}); nothing was sent; ask its owner to share it again")]
    Replaced { name: String, hash: String },
    #[error("cannot read {name:?}: {source}")]
    Read {
        name: String,
        source: std::io::Error,
    },
    /// The receiver took no more bytes (a client that stopped reading, as `| head` does).
    #[error("the receiver stopped reading after {sent} bytes")]
    Stopped { sent: u64 },
    #[error("cannot copy {name:?}: {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Too many of the user's downloads wait for a slot already.
    #[error(transparent)]
    LineFull(#[from] LineFull),
    #[error(transparent)]
    Limit(#[from] QuotaError),
    /// The instance holding the file refused it or could not be asked.
    #[error("cannot get {name:?} from {domain}: {reason}")]
    Remote {
        name: String,
        domain: String,
        reason: String,
    },
    /// The instance holding the file sent bytes that do not match its id: the chunk group
    /// starting at `at` was wrong; nothing from it on was handed on.
    #[error("{domain} sent bad data for {name:?} at byte {at} (it does not match the file's id); the transfer stopped there, every byte before it verified")]
    Corrupt {
        name: String,
        domain: String,
        at: u64,
    },
    /// The stream from the instance holding the file broke off (it went away, stalled or
    /// was cut) before the end; `at` is the first byte not received.
    #[error("the transfer of {name:?} from {domain} broke off at byte {at}: {reason}")]
    Broken {
        name: String,
        domain: String,
        at: u64,
        reason: String,
    },
    /// Another transfer is writing the same download now.
    #[error("{name:?} is being downloaded already; wait for that download to end")]
    Running { name: String },
    /// A resumed download's kept bytes were not the file's beginning (its part file changed).
    #[error("the bytes kept in downloads/ from an earlier /get of {name:?} do not match id {hash}; they were removed: /get again starts over")]
    BadPart { name: String, hash: String },
    /// `--offset` past the end of the file.
    #[error("offset {offset} is past the end of {name:?} ({size} bytes)")]
    OffsetPastEnd {
        name: String,
        offset: u64,
        size: u64,
    },
}

/// Where downloads' bytes come from: this instance's libraries, and other instances through
/// the federation client. Cheap to clone.
#[derive(Clone)]
pub struct Sources {
    /// Users' libraries on this instance.
    library: Library,
    /// Signed requests to other instances, for files held there.
    client: Client,
    /// Whether bytes from other instances are checked (always, but in a `--dev` benchmark).
    verify: Verify,
    /// Who downloads, told to the file's home (`for=@nick@domain`) only where the operator
    /// chose so (`federation.reveal_downloader`); `None`: nobody is named.
    requester: Option<String>,
}

impl Sources {
    pub fn new(library: Library, client: Client) -> Sources {
        Sources {
            library,
            client,
            verify: Verify::Checked,
            requester: None,
        }
    }

    /// These sources, naming `requester` (`@nick@domain`) to the instances asked for a file.
    /// Only for an instance whose operator turned `federation.reveal_downloader` on.
    pub fn naming(&self, requester: String) -> Sources {
        Sources {
            requester: Some(requester),
            ..self.clone()
        }
    }

    /// These sources, handing on other instances' bytes **unchecked**: for `--dev`
    /// benchmarks of what verification costs (`federation.dev_skip_verify`) only.
    pub fn unverified_for_benchmarks(mut self) -> Sources {
        self.verify = Verify::Unchecked;
        self
    }

    /// Opens `d`'s bytes for reading, proven as they are read. A local file must be shared
    /// now and be the catalogued one ([`Library::open_download`]).
    pub async fn open(&self, d: &Download) -> Result<VerifiedReader, FetchError> {
        self.open_from(d, 0).await
    }

    /// Like [`Sources::open`], handing on the bytes from `offset` (a download resumed).
    pub async fn open_from(&self, d: &Download, offset: u64) -> Result<VerifiedReader, FetchError> {
        if offset > d.size {
            return Err(FetchError::OffsetPastEnd {
                name: d.name.clone(),
                offset,
                size: d.size,
            });
        }
        match &d.source {
            Source::Local { owner_id, path } => {
                let opened = self.library.open_download(*owner_id, path, &d.hash).await?;
                Ok(VerifiedReader::local(d, opened, offset))
            }
            Source::Remote { holders } => {
                let how = remote::Ask {
                    verify: self.verify,
                    requester: self.requester.as_deref(),
                };
                let pieces = remote::open_any(&self.client, d, holders, offset, how).await?;
                Ok(VerifiedReader::remote(d, pieces, offset))
            }
        }
    }

    /// Copies `d` into `user_id`'s `downloads/`; `progress` is called with the bytes in place
    /// so far. Returns the name it was saved under (`name`, or `name (1)` and so on if that
    /// is taken). A local file leaves nothing behind on failure; a file from another
    /// instance keeps its verified bytes in `downloads/` ([`part_name`]), and the next fetch
    /// of it resumes after them.
    pub async fn fetch_to_downloads(
        &self,
        user_id: i64,
        d: &Download,
        progress: impl FnMut(u64) + Send,
    ) -> Result<String, FetchError> {
        let sink = ToDownloads::create(&self.library, user_id, d).await?;
        let from = sink.resumed_from();
        let reader = self.open_from(d, from).await?;
        let mut progress = progress;
        copy(reader, sink, move |copied| progress(from + copied)).await
    }
}

/// Where a download's verified bytes go.
pub trait Sink {
    /// What a finished copy yields.
    type Done;
    /// Takes the next chunk, proven so far (the hash of the whole is known only at the end).
    /// [`FetchError::Stopped`] when the receiver takes no more.
    fn write(&mut self, chunk: Vec<u8>) -> impl Future<Output = Result<(), FetchError>> + Send;
    /// Every byte arrived and matched the id: make the result final.
    fn finish(self) -> impl Future<Output = Result<Self::Done, FetchError>> + Send;
}

/// Copies every chunk of `from` into `to`, calling `progress` with the bytes copied so far,
/// and finishes `to` only once the bytes proved to be the download's.
pub async fn copy<S: Sink>(
    mut from: VerifiedReader,
    mut to: S,
    mut progress: impl FnMut(u64) + Send,
) -> Result<S::Done, FetchError> {
    let mut copied = 0u64;
    while let Some(chunk) = from.next_chunk().await? {
        copied += chunk.len() as u64;
        to.write(chunk).await?;
        progress(copied);
    }
    to.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::Opened;

    pub(super) fn run<T>(work: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(work)
    }

    /// A download of `catalogued`'s bytes, and a reader of a file that holds `on_disk`.
    fn reader(
        dir: &std::path::Path,
        catalogued: &[u8],
        on_disk: &[u8],
    ) -> (Download, VerifiedReader) {
        let d = Download {
            source: Source::Local {
                owner_id: 1,
                path: "tape.bin".into(),
            },
            name: "tape.bin".into(),
            size: catalogued.len() as u64,
            hash: blake3::hash(catalogued).to_hex().to_string(),
        };
        let path = dir.join("tape.bin");
        std::fs::write(&path, on_disk).unwrap();
        let opened = Opened::unchecked(std::fs::File::open(&path).unwrap());
        let reader = VerifiedReader::local(&d, opened, 0);
        (d, reader)
    }

    fn copy_of(owner: &str, owner_id: Option<i64>, id: &str) -> CatalogFile {
        CatalogFile {
            id: id.to_owned(),
            name: format!("{owner}.bin"),
            path: format!("{owner}.bin"),
            size: 5,
            owner: rosewire_shell::Address::parse(owner).unwrap(),
            owner_id,
            shared: true,
        }
    }

    #[test]
    fn a_download_prefers_a_copy_here_and_else_asks_every_holder_once_the_chosen_first() {
        let chosen = copy_of("@bea@b.example", None, "aa");
        let copies = [
            copy_of("@cid@c.example", None, "aa"),
            copy_of("@bea@b.example", None, "aa"),
            copy_of("@eve@C.example", None, "aa"),
            copy_of("@other@d.example", None, "bb"),
        ];
        let d = Download::of_copies(&chosen, &copies);
        assert_eq!(
            d.source,
            Source::Remote {
                holders: vec!["b.example".into(), "c.example".into()]
            }
        );
        // A copy on this instance wins: nothing is relayed, under the chosen name.
        let mut with_local = copies.to_vec();
        with_local.push(copy_of("@dora", Some(4), "aa"));
        let d = Download::of_copies(&chosen, &with_local);
        assert_eq!(
            d.source,
            Source::Local {
                owner_id: 4,
                path: "@dora.bin".into()
            }
        );
        assert_eq!(d.name, "@bea@b.example.bin");
        // At most MAX_HOLDERS instances.
        let many: Vec<CatalogFile> = (0..20)
            .map(|i| copy_of(&format!("@u@h{i}.example"), None, "aa"))
            .collect();
        let Source::Remote { holders } = Download::of_copies(&chosen, &many).source else {
            panic!("remote");
        };
        assert_eq!(holders.len(), MAX_HOLDERS);
    }

    /// A receiver that keeps what it is given, and whether it was finished.
    #[derive(Default)]
    struct Kept {
        bytes: Vec<u8>,
    }

    impl Sink for &mut Kept {
        type Done = ();
        async fn write(&mut self, chunk: Vec<u8>) -> Result<(), FetchError> {
            self.bytes.extend(chunk);
            Ok(())
        }
        async fn finish(self) -> Result<(), FetchError> {
            Ok(())
        }
    }

    /// Catalogued bytes larger than a chunk, and other bytes of the same size.
    fn tapes() -> (Vec<u8>, Vec<u8>) {
        let tape: Vec<u8> = (0..COPY_CHUNK * 2 + 7).map(|i| (i % 251) as u8).collect();
        let mut other = tape.clone();
        *other.last_mut().unwrap() ^= 1;
        (tape, other)
    }

    #[test]
    fn the_catalogued_bytes_are_copied_in_bounded_chunks_with_progress() {
        let dir = tempfile::tempdir().unwrap();
        let (tape, _) = tapes();
        let (_, bytes) = reader(dir.path(), &tape, &tape);
        let mut kept = Kept::default();
        let mut seen = Vec::new();
        run(copy(bytes, &mut kept, |n| seen.push(n))).unwrap();
        assert!(kept.bytes == tape);
        assert_eq!(seen.last(), Some(&(tape.len() as u64)));
        assert!(seen.windows(2).all(|w| w[1] - w[0] <= COPY_CHUNK as u64));
    }

    #[test]
    fn a_local_file_read_from_an_offset_hands_on_the_tail_and_still_checks_the_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (tape, other) = tapes();
        for offset in [
            1,
            COPY_CHUNK as u64 - 1,
            COPY_CHUNK as u64,
            tape.len() as u64,
        ] {
            let (d, _) = reader(dir.path(), &tape, &tape);
            let path = dir.path().join("tape.bin");
            let opened = Opened::unchecked(std::fs::File::open(&path).unwrap());
            let mut kept = Kept::default();
            run(copy(
                VerifiedReader::local(&d, opened, offset),
                &mut kept,
                |_| {},
            ))
            .unwrap();
            assert!(kept.bytes == tape[offset as usize..], "offset {offset}");
        }
        // A byte changed before the offset still fails the copy.
        let (d, _) = reader(dir.path(), &tape, &other);
        let mut before = other.clone();
        before[0] ^= 1;
        std::fs::write(dir.path().join("tape.bin"), &before).unwrap();
        let opened = Opened::unchecked(std::fs::File::open(dir.path().join("tape.bin")).unwrap());
        let reader = VerifiedReader::local(&d, opened, COPY_CHUNK as u64 + 1);
        let err = run(copy(reader, &mut Kept::default(), |_| {})).unwrap_err();
        assert!(matches!(err, FetchError::Changed { .. }), "{err}");
    }

    #[test]
    fn bytes_that_do_not_match_the_id_fail_the_copy_before_it_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let (tape, other) = tapes();
        let (_, bytes) = reader(dir.path(), &tape, &other);
        let mut finished = false;
        struct Finish<'a>(&'a mut bool);
        impl Sink for Finish<'_> {
            type Done = ();
            async fn write(&mut self, _: Vec<u8>) -> Result<(), FetchError> {
                Ok(())
            }
            async fn finish(self) -> Result<(), FetchError> {
                *self.0 = true;
                Ok(())
            }
        }
        let err = run(copy(bytes, Finish(&mut finished), |_| {})).unwrap_err();
        assert!(matches!(err, FetchError::Changed { .. }), "{err}");
        assert!(!finished, "a copy that did not match was made final");
    }

    #[test]
    fn a_file_longer_than_catalogued_fails_before_the_extra_bytes_are_handed_on() {
        let dir = tempfile::tempdir().unwrap();
        let tape = vec![7u8; 1000];
        let mut longer = tape.clone();
        longer.extend(vec![8u8; COPY_CHUNK * 3]);
        let (_, bytes) = reader(dir.path(), &tape, &longer);
        let mut kept = Kept::default();
        let err = run(copy(bytes, &mut kept, |_| {})).unwrap_err();
        assert!(matches!(err, FetchError::Changed { .. }), "{err}");
        assert!(
            kept.bytes.len() <= tape.len(),
            "{} bytes handed on past the catalogued {}",
            kept.bytes.len(),
            tape.len()
        );
    }

    /// Sources over `library`, with a client that reaches no instance in these tests.
    pub(super) fn sources(library: Library) -> Sources {
        let key = std::sync::Arc::new(crate::fed::identity::InstanceKey::generate(
            "http://a.example",
        ));
        let client = Client::new(key, crate::config::Scheme::Http, true, None).unwrap();
        Sources::new(library, client)
    }

    /// A library over a fresh database in `dir`, with a quota of `quota` bytes.
    pub(super) fn library(
        dir: &std::path::Path,
        quota: u64,
    ) -> (Library, crate::store::StoreThread) {
        let (store, thread) = crate::store::Store::open(&dir.join("db")).unwrap();
        let limits = crate::config::LibraryConfig {
            quota_bytes: quota,
            max_file_bytes: quota,
            ..crate::config::LibraryConfig::default()
        };
        (Library::new(dir, store, limits), thread)
    }

    #[test]
    fn a_get_that_does_not_match_saves_nothing_and_gives_its_quota_back() {
        let dir = tempfile::tempdir().unwrap();
        let (tape, other) = tapes();
        let quota = tape.len() as u64 * 3 / 2;
        let (library, _thread) = library(dir.path(), quota);
        let (d, bytes) = reader(dir.path(), &tape, &other);
        run(async {
            let sink = ToDownloads::create(&library, 2, &d).await.unwrap();
            let err = copy(bytes, sink, |_| {}).await.unwrap_err();
            assert!(matches!(err, FetchError::Changed { .. }), "{err}");
            assert!(err.to_string().contains("nothing was saved"), "{err}");
            // The reservation was released: the whole quota can be reserved again.
            library.reserve(2, quota).await.unwrap();
        });
        for folder in [library.downloads_dir(2), library.partial_dir(2)] {
            assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0, "{folder:?}");
        }
    }

    #[test]
    fn a_get_that_matches_lands_in_downloads_under_a_free_name() {
        let dir = tempfile::tempdir().unwrap();
        let (tape, _) = tapes();
        let (library, _thread) = library(dir.path(), 1 << 30);
        run(async {
            for want in ["tape.bin", "tape (1).bin"] {
                let (d, bytes) = reader(dir.path(), &tape, &tape);
                let sink = ToDownloads::create(&library, 2, &d).await.unwrap();
                assert_eq!(copy(bytes, sink, |_| {}).await.unwrap(), want);
                let saved = std::fs::read(library.downloads_dir(2).join(want)).unwrap();
                assert!(saved == tape);
            }
        });
        assert_eq!(
            std::fs::read_dir(library.partial_dir(2)).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_get_larger_than_the_largest_file_allowed_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (tape, _) = tapes();
        let (library, _thread) = library(dir.path(), tape.len() as u64 - 1);
        let (d, _) = reader(dir.path(), &tape, &tape);
        let err = run(ToDownloads::create(&library, 2, &d))
            .err()
            .expect("refused");
        assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");
        assert!(!library.downloads_dir(2).exists());
    }
}
