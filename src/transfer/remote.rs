//! A download's bytes from another instance: a signed `GET /api/s2s/files/{id}` through the
//! federation client (the SSRF-checked resolver), its verified encoding decoded on a
//! blocking task, and each chunk group checked against the id before it is queued for the
//! [`VerifiedReader`](super::VerifiedReader).
//!
//! The queue is bounded ([`REMOTE_QUEUE_PIECES`] of at most [`REMOTE_PIECE_BYTES`]): when the
//! receiver (an SSH channel, a file in `downloads/`) is slow, the task stops reading the
//! connection, and the other instance's sender waits in turn.
//!
//! **Privacy:** the request carries this instance's signature, the id and the offset;
//! nothing about the person downloading.

use tokio::sync::{mpsc, oneshot};

use super::encoding::{self, ReceiveError};
use super::{Download, FetchError};
use crate::fed::client::{Client, FetchError as CallError, STREAM_READ_TIMEOUT};
use crate::fed::files::{CONTENT_TYPE, FILES_PATH};

/// Whether chunk groups are checked against the id as they arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Always, in service.
    Checked,
    /// Never: `--dev` with `federation.dev_skip_verify`, so a benchmark can measure what the
    /// checking costs (a whole file only; a resumed one is still checked).
    Unchecked,
}

/// How an instance is asked for a file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ask<'a> {
    pub verify: Verify,
    /// Who downloads (`@nick@domain`), named in the request; `None` names nobody.
    pub requester: Option<&'a str>,
}

/// Verified bytes gathered before they are queued.
pub const REMOTE_PIECE_BYTES: usize = 64 * 1024;
/// Pieces queued between the decoding task and the receiver.
pub const REMOTE_QUEUE_PIECES: usize = 4;

/// The queue of a download's verified pieces; an error, if any, comes after the last good
/// piece.
pub(super) type Pieces = mpsc::Receiver<Result<Vec<u8>, FetchError>>;

/// Asks `domain` for the bytes of `d` from `offset` to the end. Returns once the other
/// instance answered with a stream (its refusal is the error); the bytes then arrive,
/// verified, on the queue.
pub(super) async fn open(
    client: &Client,
    d: &Download,
    domain: &str,
    offset: u64,
    ask: Ask<'_>,
) -> Result<Pieces, FetchError> {
    let verify = ask.verify;
    let name = d.name.clone();
    let Some(id) = encoding::parse_id(&d.hash) else {
        return Err(remote(d, domain, format!("{:?} is not a file id", d.hash)));
    };
    let mut url = format!("{}{FILES_PATH}{}", client.scheme().base_url(domain), d.hash);
    let query = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if offset > 0 {
            query.append_pair("offset", &offset.to_string());
        }
        if let Some(requester) = ask.requester {
            query.append_pair("for", requester);
        }
        query.finish()
    };
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }
    let (answered, answer) = oneshot::channel();
    let (tx, rx) = mpsc::channel(REMOTE_QUEUE_PIECES);
    let (client, size, from) = (client.clone(), d.size, domain.to_owned());
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let body = match client.get_stream_blocking(&url, CONTENT_TYPE) {
            Ok(body) => {
                let _ = answered.send(Ok(()));
                body
            }
            Err(e) => {
                let _ = answered.send(Err(e));
                return;
            }
        };
        let mut piece = Vec::with_capacity(REMOTE_PIECE_BYTES);
        let take = |verified: bytes::Bytes| {
            piece.extend_from_slice(&verified);
            if piece.len() < REMOTE_PIECE_BYTES {
                return true;
            }
            let full = std::mem::replace(&mut piece, Vec::with_capacity(REMOTE_PIECE_BYTES));
            tx.blocking_send(Ok(full)).is_ok()
        };
        let decoded = match verify {
            Verify::Unchecked if offset == 0 => encoding::decode_unverified(body, size, take),
            _ => encoding::decode(body, id, size, offset, take),
        };
        if !matches!(decoded, Err(ReceiveError::Stopped)) {
            // The verified bytes before a failure are handed on too.
            if !piece.is_empty() && tx.blocking_send(Ok(piece)).is_err() {
                return;
            }
        }
        if let Err(e) = decoded {
            let failure = match e {
                ReceiveError::Stopped => return,
                ReceiveError::Corrupt { at } => {
                    tracing::warn!(peer = %from, name = %name, at, "bad data from another instance");
                    FetchError::Corrupt {
                        name,
                        domain: from,
                        at,
                    }
                }
                ReceiveError::WrongSize { said, size } => FetchError::Remote {
                    name,
                    domain: from,
                    reason: format!("it sent a size of {said} bytes, not {size}"),
                },
                ReceiveError::Broken { at, source } => FetchError::Broken {
                    name,
                    domain: from,
                    at,
                    reason: broken_reason(&source),
                },
            };
            let _ = tx.blocking_send(Err(failure));
        }
    });
    match answer.await {
        Ok(Ok(())) => Ok(rx),
        Ok(Err(e)) => Err(refused(d, domain, e)),
        Err(_) => Err(remote(d, domain, "the request task failed".into())),
    }
}

/// Asks the instances in `holders` for the bytes of `d` from `offset`, in order, until one
/// answers with a stream; when that stream fails (it broke off, stalled, or sent bad data),
/// the next holder is asked for the rest, from the first byte not yet handed on. Every byte
/// is verified against the id whoever sends it, so any holder is as good as the owner's
/// home. The error of the last holder tried ends the queue when none is left.
pub(super) async fn open_any(
    client: &Client,
    d: &Download,
    holders: &[String],
    offset: u64,
    ask: Ask<'_>,
) -> Result<Pieces, FetchError> {
    let (mut pieces, mut next) = first_answer(client, d, holders, offset, ask).await?;
    if next >= holders.len() {
        return Ok(pieces);
    }
    let (tx, rx) = mpsc::channel(REMOTE_QUEUE_PIECES);
    let (client, d, holders) = (client.clone(), d.clone(), holders.to_vec());
    let (verify, requester) = (ask.verify, ask.requester.map(str::to_owned));
    tokio::spawn(async move {
        let ask = Ask {
            verify,
            requester: requester.as_deref(),
        };
        let mut handed = offset;
        loop {
            match pieces.recv().await {
                Some(Ok(piece)) => {
                    handed += piece.len() as u64;
                    if tx.send(Ok(piece)).await.is_err() {
                        return; // the receiver went away: dropping `pieces` stops the fetch
                    }
                }
                Some(Err(e)) if next < holders.len() && fails_over(&e) => {
                    tracing::info!(name = %d.name, at = handed, "{e}; asking another holder");
                    match first_answer(&client, &d, &holders[next..], handed, ask).await {
                        Ok((more, used)) => {
                            pieces = more;
                            next += used;
                        }
                        Err(last) => {
                            let _ = tx.send(Err(last)).await;
                            return;
                        }
                    }
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                None => return,
            }
        }
    });
    Ok(rx)
}

/// The stream of the first of `holders` that answers with one, and how many were asked;
/// else the last refusal.
async fn first_answer(
    client: &Client,
    d: &Download,
    holders: &[String],
    offset: u64,
    ask: Ask<'_>,
) -> Result<(Pieces, usize), FetchError> {
    let mut last = FetchError::NotShared {
        name: d.name.clone(),
    };
    for (i, domain) in holders.iter().enumerate() {
        match open(client, d, domain, offset, ask).await {
            Ok(pieces) => return Ok((pieces, i + 1)),
            Err(e) => {
                tracing::info!(peer = %domain, name = %d.name, "a holder did not answer: {e}");
                last = e;
            }
        }
    }
    Err(last)
}

/// Whether another holder may mend this failure: the stream, not the download, went wrong.
fn fails_over(e: &FetchError) -> bool {
    matches!(
        e,
        FetchError::Broken { .. } | FetchError::Corrupt { .. } | FetchError::Remote { .. }
    )
}

/// Why a stream broke off, for people: a stall says how long nothing came.
fn broken_reason(e: &std::io::Error) -> String {
    let text = e.to_string().to_lowercase();
    if e.kind() == std::io::ErrorKind::TimedOut || text.starts_with("timeout") {
        format!(
            "nothing arrived for {} s (the instance stalled)",
            STREAM_READ_TIMEOUT.as_secs()
        )
    } else {
        text
    }
}

fn remote(d: &Download, domain: &str, reason: String) -> FetchError {
    FetchError::Remote {
        name: d.name.clone(),
        domain: domain.to_owned(),
        reason,
    }
}

/// What the user is told when `domain` does not answer with a stream.
fn refused(d: &Download, domain: &str, e: CallError) -> FetchError {
    let reason = match e {
        CallError::Status(404, _) => {
            "it is not shared there any more (its owner unshared or removed it); search again"
                .to_owned()
        }
        CallError::Status(410, _) => {
            "it changed on its owner's disk and is no longer offered; search again".to_owned()
        }
        CallError::Status(429 | 503, text) => format!("{domain} is busy: {text}"),
        CallError::Status(code, text) => format!("{domain} answered {code}: {text}"),
        CallError::Transport(e) => format!("cannot reach {domain}: {e}"),
        e => e.to_string(),
    };
    remote(d, domain, reason)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{library, run, sources};
    use super::super::{copy, Sink, Source};
    use super::*;

    /// A one-shot HTTP server on 127.0.0.1 answering its one request with `status` and `body`;
    /// its `IP:PORT`.
    fn serve_once(status: u16, body: Vec<u8>) -> String {
        serve_once_telling(status, body).0
    }

    /// [`serve_once`], and the request line it gets.
    fn serve_once_telling(
        status: u16,
        body: Vec<u8>,
    ) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let (told, requests) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                let mut reader = std::io::BufReader::new(stream);
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let _ = told.send(line.trim().to_owned());
                line.clear();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut stream = reader.into_inner();
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        (address.to_string(), requests)
    }

    /// The verified encoding of `bytes`, sent by a liar: the bytes at `bad` flipped.
    fn lying_encoding(bytes: &[u8], bad: Option<usize>) -> Vec<u8> {
        encoding_from(bytes, bad, 0)
    }

    /// [`lying_encoding`] from `offset`.
    fn encoding_from(bytes: &[u8], bad: Option<usize>, offset: u64) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let outboards = encoding::Outboards::new(dir.path().to_owned());
        let id = blake3::hash(bytes);
        let size = bytes.len() as u64;
        outboards.make(&id, size, bytes).unwrap();
        let outboard = bao_tree::io::outboard::PreOrderOutboard {
            root: id,
            tree: encoding::tree(size),
            data: std::fs::File::open(dir.path().join(id.to_hex().as_str())).unwrap(),
        };
        let mut sent = bytes.to_vec();
        if let Some(bad) = bad {
            sent[bad] ^= 1;
        }
        let mut out = size.to_le_bytes().to_vec();
        let ranges = encoding::ranges_from(offset);
        bao_tree::io::sync::encode_ranges(&sent, &outboard, &ranges, &mut out).unwrap();
        out
    }

    /// A receiver that keeps what it is given.
    #[derive(Default)]
    struct Kept(Vec<u8>);

    impl Sink for &mut Kept {
        type Done = ();
        async fn write(&mut self, chunk: Vec<u8>) -> Result<(), FetchError> {
            self.0.extend(chunk);
            Ok(())
        }
        async fn finish(self) -> Result<(), FetchError> {
            Ok(())
        }
    }

    /// Downloads `bytes` (as the catalog knows them) from the instance at `domain`; returns
    /// what reached the receiver and the outcome.
    fn fetch(bytes: &[u8], domain: &str) -> (Vec<u8>, Result<(), FetchError>) {
        fetch_any(bytes, &[domain.to_owned()])
    }

    fn tape() -> Vec<u8> {
        (0..200_000u32).map(|i| (i * 13 + i / 512) as u8).collect()
    }

    #[test]
    fn a_file_from_another_instance_arrives_whole() {
        let bytes = tape();
        let domain = serve_once(200, lying_encoding(&bytes, None));
        let (got, result) = fetch(&bytes, &domain);
        result.unwrap();
        assert!(got == bytes);
    }

    #[test]
    fn a_bad_byte_from_another_instance_ends_the_transfer_at_its_chunk_group_naming_it() {
        let bytes = tape();
        let domain = serve_once(200, lying_encoding(&bytes, Some(150_000)));
        let (got, result) = fetch(&bytes, &domain);
        let err = result.unwrap_err();
        let group = 150_000 / 16_384 * 16_384;
        assert!(
            matches!(&err, FetchError::Corrupt { domain: d, at, .. } if *d == domain && *at == group),
            "{err:?}"
        );
        assert!(
            got == bytes[..group as usize],
            "{} bytes handed on",
            got.len()
        );
        let text = err.to_string();
        assert!(text.contains(&format!("{domain} sent bad data")), "{text}");
    }

    #[test]
    fn a_stream_that_breaks_off_hands_on_only_whole_verified_groups() {
        let bytes = tape();
        let mut encoding = lying_encoding(&bytes, None);
        encoding.truncate(encoding.len() / 2);
        let domain = serve_once(200, encoding);
        let (got, result) = fetch(&bytes, &domain);
        let err = result.unwrap_err();
        let FetchError::Broken { at, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*at, got.len() as u64);
        assert!(got == bytes[..got.len()]);
        assert!(err.to_string().contains("broke off"), "{err}");
    }

    #[test]
    fn a_refusal_of_the_holding_instance_says_why() {
        let bytes = tape();
        let domain = serve_once(404, b"no file shared here has id x\n".to_vec());
        let (got, result) = fetch(&bytes, &domain);
        assert!(got.is_empty());
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains(&domain) && err.contains("not shared there any more"),
            "{err}"
        );
        let domain = serve_once(429, b"all slots in use\n".to_vec());
        let err = fetch(&bytes, &domain).1.unwrap_err().to_string();
        assert!(err.contains("is busy: all slots in use"), "{err}");
    }

    #[test]
    fn a_download_into_downloads_keeps_its_verified_bytes_and_resumes_after_them() {
        let bytes = tape();
        let dir = tempfile::tempdir().unwrap();
        let (library, _thread) = library(dir.path(), 1 << 30);
        let sources = sources(library.clone());
        let mut truncated = lying_encoding(&bytes, None);
        truncated.truncate(truncated.len() / 2);
        let domain = serve_once(200, truncated);
        let d = far(&bytes, vec![domain.clone()]);
        let err = run(sources.fetch_to_downloads(7, &d, |_| {})).unwrap_err();
        let FetchError::Broken { at, .. } = err else {
            panic!("{err:?}");
        };
        let part = library.downloads_dir(7).join(super::super::part_name(&d));
        let kept = std::fs::read(&part).unwrap();
        assert_eq!(kept.len() as u64, at);
        assert!(kept == bytes[..kept.len()], "only verified bytes are kept");

        // The next fetch asks only for the rest, and the whole file is saved.
        let (domain, requests) = serve_once_telling(200, encoding_from(&bytes, None, at));
        let d = Download {
            source: Source::Remote {
                holders: vec![domain],
            },
            ..d
        };
        let mut seen = Vec::new();
        let saved = run(sources.fetch_to_downloads(7, &d, |n| seen.push(n))).unwrap();
        assert_eq!(saved, "far.bin");
        let request = requests.recv().unwrap();
        assert!(request.contains(&format!("?offset={at} ")), "{request}");
        assert!(std::fs::read(library.downloads_dir(7).join("far.bin")).unwrap() == bytes);
        assert!(!part.exists());
        assert!(seen.iter().all(|&n| n > at) && seen.last() == Some(&(bytes.len() as u64)));
    }

    #[test]
    fn kept_bytes_that_are_not_the_files_beginning_are_caught_and_removed() {
        let bytes = tape();
        let dir = tempfile::tempdir().unwrap();
        let (library, _thread) = library(dir.path(), 1 << 30);
        let sources = sources(library.clone());
        let at = 50_000;
        let (domain, _) = serve_once_telling(200, encoding_from(&bytes, None, at));
        let d = far(&bytes, vec![domain]);
        run(library.prepare(7)).unwrap();
        let part = library.downloads_dir(7).join(super::super::part_name(&d));
        let mut wrong = bytes[..at as usize].to_vec();
        wrong[10] ^= 1;
        std::fs::write(&part, wrong).unwrap();
        let err = run(sources.fetch_to_downloads(7, &d, |_| {})).unwrap_err();
        assert!(matches!(err, FetchError::BadPart { .. }), "{err:?}");
        assert!(err.to_string().contains("/get again starts over"), "{err}");
        assert!(!part.exists());
        assert_eq!(
            std::fs::read_dir(library.downloads_dir(7)).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_download_over_the_quota_is_refused_and_leaves_nothing_behind() {
        let bytes = tape();
        let dir = tempfile::tempdir().unwrap();
        let (library, _thread) = library(dir.path(), bytes.len() as u64 - 1);
        let sources = sources(library.clone());
        let d = Download {
            source: Source::Remote {
                holders: vec!["127.0.0.1:9".into()],
            },
            name: "far.bin".into(),
            size: bytes.len() as u64 - 1,
            hash: blake3::hash(&bytes).to_hex().to_string(),
        };
        // Something else takes part of the quota.
        let _held = run(library.reserve(7, 10)).unwrap();
        let err = run(sources.fetch_to_downloads(7, &d, |_| {})).unwrap_err();
        assert!(matches!(err, FetchError::OverQuota { .. }), "{err:?}");
        assert_eq!(
            std::fs::read_dir(library.downloads_dir(7)).unwrap().count(),
            0
        );
    }

    /// The download of `bytes`, named `far.bin`, held by the instances at `holders`.
    fn far(bytes: &[u8], holders: Vec<String>) -> Download {
        Download {
            source: Source::Remote { holders },
            name: "far.bin".into(),
            size: bytes.len() as u64,
            hash: blake3::hash(bytes).to_hex().to_string(),
        }
    }

    /// Downloads `bytes` from the instances at `holders`, in turn.
    fn fetch_any(bytes: &[u8], holders: &[String]) -> (Vec<u8>, Result<(), FetchError>) {
        let dir = tempfile::tempdir().unwrap();
        let (library, _thread) = library(dir.path(), 1 << 30);
        let sources = sources(library);
        let d = far(bytes, holders.to_vec());
        let mut kept = Kept::default();
        let result = run(async {
            let reader = sources.open(&d).await?;
            copy(reader, &mut kept, |_| {}).await
        });
        (kept.0, result)
    }

    #[test]
    fn a_holder_that_lies_or_breaks_off_is_replaced_by_the_next_from_the_first_missing_byte() {
        let bytes = tape();
        let group = 150_000 / 16_384 * 16_384;
        // The first holder sends a bad byte; the second is asked for the rest, from the bad
        // chunk group on (the request says so), and the whole file arrives, verified.
        let liar = serve_once(200, lying_encoding(&bytes, Some(150_000)));
        let (honest, asked) = serve_once_telling(200, encoding_from(&bytes, None, group as u64));
        let (got, result) = fetch_any(&bytes, &[liar, honest]);
        result.unwrap();
        assert!(got == bytes, "{} bytes", got.len());
        let request = asked.recv().unwrap();
        assert!(request.contains(&format!("?offset={group}")), "{request}");

        // A first holder that refuses: the next one serves it all.
        let refusing = serve_once(404, b"no file shared here has id x\n".to_vec());
        let whole = serve_once(200, lying_encoding(&bytes, None));
        let (got, result) = fetch_any(&bytes, &[refusing, whole]);
        result.unwrap();
        assert!(got == bytes);

        // Every holder failing: the last one's error, and only verified bytes handed on.
        let mut cut = lying_encoding(&bytes, None);
        cut.truncate(cut.len() / 2);
        let first = serve_once(200, cut);
        let second = serve_once(200, lying_encoding(&bytes, Some(190_000)));
        let (got, result) = fetch_any(&bytes, &[first, second.clone()]);
        let err = result.unwrap_err();
        assert!(
            matches!(&err, FetchError::Corrupt { domain, .. } if *domain == second),
            "{err:?}"
        );
        assert!(got == bytes[..got.len()]);
    }

    #[test]
    fn a_shell_download_cut_by_bad_data_keeps_the_verified_bytes_and_names_the_sender() {
        let bytes = tape();
        let dir = tempfile::tempdir().unwrap();
        let (library, _thread) = library(dir.path(), 1 << 30);
        let sources = sources(library.clone());
        let domain = serve_once(200, lying_encoding(&bytes, Some(100_000)));
        let d = far(&bytes, vec![domain.clone()]);
        let err = run(sources.fetch_to_downloads(7, &d, |_| {})).unwrap_err();
        let group = 100_000 / 16_384 * 16_384;
        assert!(
            matches!(&err, FetchError::Corrupt { domain: from, at, .. } if *from == domain && *at == group),
            "{err:?}"
        );
        let part = library.downloads_dir(7).join(super::super::part_name(&d));
        assert!(std::fs::read(&part).unwrap() == bytes[..group as usize]);
        // What the shell shows: the sender, and how to go on.
        let finished = super::super::Finished {
            download: d.clone(),
            result: Err(err),
        };
        let shown = finished.report().unwrap_err();
        assert!(
            shown.contains(&format!("{domain} sent bad data")),
            "{shown}"
        );
        assert!(shown.contains("again resumes from there"), "{shown}");
    }
}
