//! `GET /api/s2s/files/{id}[?offset=N]`: a file shared here, sent to another instance (the
//! downloader's home) as its verified encoding (`transfer::encoding`): the size prefix, then
//! the tree's parents and 16 KiB chunk groups from the group holding `offset` to the end.
//!
//! The bytes leave through bounded buffers: a blocking task reads the file with positioned
//! reads, checks each chunk group against the outboard, and hands pieces of at most
//! [`STREAM_PIECE_BYTES`] to the connection through a queue of [`STREAM_QUEUE_PIECES`]; when
//! the other instance reads slowly the queue fills and the task waits (backpressure), and
//! after [`STREAM_STALL_TIMEOUT`] without progress it gives up. Streams are counted in
//! [`Slots`], per requesting instance and in all (`federation.relay_uploads_per_peer`,
//! `federation.relay_uploads`).
//!
//! **Privacy:** the request names an instance (its signature) and a file, nothing about the
//! person downloading; logs here name only that instance.

use std::collections::HashMap;
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use warp::http::{header, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::verify::Signed;
use crate::app::App;
use crate::library::SharedHere;
use crate::transfer::encoding::{self, OutboardError, SendError};
use crate::transfer::{FetchError, Throttle};
use rosewire_shell::{Address, Message};

/// The path of the endpoint, before the id.
pub const FILES_PATH: &str = "/api/s2s/files/";
/// The media type of the verified encoding.
pub const CONTENT_TYPE: &str = "application/vnd.rosewire.bao";
/// Bytes gathered before a piece of the encoding is handed to the connection.
pub const STREAM_PIECE_BYTES: usize = 64 * 1024;
/// Pieces queued between the encoder and the connection: with the one being gathered, at
/// most 5 × 64 KiB per stream in memory.
pub const STREAM_QUEUE_PIECES: usize = 4;
/// How long the encoder waits for room in the queue (the other instance reading nothing)
/// before it ends the stream and frees its slot.
pub const STREAM_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Seconds an instance refused for want of a slot is told to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 2;

pub fn route(
    app: App,
    signed: impl Filter<Extract = (Signed,), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let slots = Slots::new(
        app.config.federation.relay_uploads_per_peer,
        app.config.federation.relay_uploads,
    );
    // One budget for every stream this instance sends (`federation.relay_bytes_per_second`).
    let throttle = Throttle::new(app.config.federation.relay_bytes_per_second);
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::path!("api" / "s2s" / "files" / String)
        .and(warp::get())
        .and(signed)
        .and(query)
        .then(move |id: String, signed: Signed, query: String| {
            let (app, slots, throttle) = (app.clone(), slots.clone(), throttle.clone());
            async move {
                app.fed.heard_from(&signed.domain);
                serve(&app, &slots, &throttle, &signed.domain, &id, &query).await
            }
        })
}

/// The answer to one request of `peer` for the file `id`.
async fn serve(
    app: &App,
    slots: &Slots,
    throttle: &Throttle,
    peer: &str,
    id: &str,
    query: &str,
) -> Response {
    let Some(hash) = encoding::parse_id(id) else {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("{id:?} is not a file id: 64 lowercase hex digits"),
        );
    };
    let (offset, requester) = match parse_query(query, peer) {
        Ok(parsed) => parsed,
        Err(reason) => return text(StatusCode::BAD_REQUEST, &reason),
    };
    let slot = match slots.take(peer) {
        Ok(slot) => slot,
        Err(full) => {
            tracing::info!(peer, "file stream refused: {full}");
            let status = match full {
                Full::Peer(_) => StatusCode::TOO_MANY_REQUESTS,
                Full::All(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            let mut answer = text(status, &full.to_string());
            answer
                .headers_mut()
                .insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
            return answer;
        }
    };
    let SharedHere {
        opened,
        size,
        owner_id,
        path,
    } = match app.library.open_shared_by_id(id).await {
        Ok(Some(found)) => found,
        // Unknown, or no longer shared: the same answer, so no peer learns which files
        // exist here unshared.
        Ok(None) => {
            return text(
                StatusCode::NOT_FOUND,
                &format!("no file shared here has id {id}"),
            )
        }
        Err(e @ FetchError::Replaced { .. }) => {
            tracing::warn!(peer, id, "file stream refused: {e}");
            return text(
                StatusCode::GONE,
                &format!("file {id} changed on its owner's disk and is no longer offered"),
            );
        }
        Err(e) => {
            tracing::warn!(peer, id, "file stream failed: {e}");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot read file {id}"),
            );
        }
    };
    if offset > size {
        return text(
            StatusCode::RANGE_NOT_SATISFIABLE,
            &format!("offset {offset} is past the end of file {id} ({size} bytes)"),
        );
    }
    let file = opened.into_file();
    let outboards = app.library.outboards.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        outboards
            .open_or_make(&hash, size, &file)
            .map(|outboard| (file, outboard))
    })
    .await;
    let (file, outboard) = match prepared {
        Ok(Ok(prepared)) => prepared,
        Ok(Err(e @ OutboardError::NotTheFile(_))) => {
            tracing::warn!(peer, id, "file stream refused: {e}");
            return text(
                StatusCode::GONE,
                &format!("file {id} changed on its owner's disk and is no longer offered"),
            );
        }
        Ok(Err(e)) => {
            tracing::warn!(peer, id, "file stream failed: {e}");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot prepare file {id} for sending"),
            );
        }
        Err(e) => {
            tracing::warn!(peer, id, "file stream failed: {e}");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot prepare file {id} for sending"),
            );
        }
    };
    tracing::info!(peer, id, offset, size, "file stream started");
    if let Some(requester) = requester {
        tell_owner(app, owner_id, &path, &requester);
    }
    let (tx, rx) = mpsc::channel(STREAM_QUEUE_PIECES);
    let (span, runtime, outboards) = (
        tracing::Span::current(),
        tokio::runtime::Handle::current(),
        app.library.outboards.clone(),
    );
    let (peer, id, throttle) = (peer.to_owned(), id.to_owned(), throttle.clone());
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let _entered = span.enter();
        let mut out = Pieces {
            tx,
            runtime,
            throttle,
            gathered: BytesMut::with_capacity(STREAM_PIECE_BYTES),
        };
        match encoding::encode(&file, &outboard, offset, &mut out) {
            Ok(()) => tracing::info!(peer, id, "file stream sent"),
            Err(SendError::Mismatch(at)) => {
                // Edited in place since it was opened, or a damaged outboard: the
                // outboard is made again (or refused) on the next request.
                tracing::warn!(
                    peer,
                    id,
                    "file stream cut: the bytes do not match the id at byte {at}"
                );
                outboards.forget(&hash);
                out.fail(format!("file {id} changed on its owner's disk"));
            }
            Err(SendError::Io(e)) => {
                tracing::info!(peer, id, "file stream stopped: {e}");
                out.fail(e.to_string());
            }
        }
    });
    let mut answer = warp::reply::stream(Received(rx)).into_response();
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        CONTENT_TYPE.parse().expect("a media type"),
    );
    answer
}

/// The `offset` of a query (0 without one), and who downloads (`for`, only where the
/// requesting instance chose to say: `@nick@domain` of one of its own users); any other
/// parameter is refused.
fn parse_query(query: &str, peer: &str) -> Result<(u64, Option<Address>), String> {
    let (mut offset, mut requester) = (0, None);
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "offset" => {
                offset = value
                    .parse()
                    .map_err(|_| format!("offset {value:?} is not a number of bytes"))?
            }
            "for" => {
                let who = Address::parse(&value)
                    .ok()
                    .filter(|a| {
                        a.domain
                            .as_deref()
                            .is_some_and(|d| d.eq_ignore_ascii_case(peer))
                    })
                    .filter(|a| crate::nick::validate_syntax(&a.nick).is_ok());
                requester = Some(who.ok_or_else(|| {
                    format!(
                        "for {:?} is not @nick@{peer}: an instance names only its own users",
                        value.chars().take(80).collect::<String>()
                    )
                })?);
            }
            other => {
                return Err(format!(
                    "unknown query parameter {other:?}; only offset and for"
                ))
            }
        }
    }
    Ok((offset, requester))
}

/// Tells user `owner_id` (their open shells) that `requester` downloads their file at `path`:
/// the requesting instance chose to say who (`federation.reveal_downloader` there).
fn tell_owner(app: &App, owner_id: i64, path: &str, requester: &Address) {
    let name = path.rsplit('/').next().unwrap_or(path);
    app.chat.tell(
        owner_id,
        None,
        Message::notice(
            crate::chat::unix_now(),
            &format!("{requester} is downloading {name} from you"),
        ),
    );
}

/// A plain-text answer: one line.
fn text(status: StatusCode, line: &str) -> Response {
    warp::reply::with_status(format!("{line}\n"), status).into_response()
}

/// The encoder's side of a stream: pieces of [`STREAM_PIECE_BYTES`] into the queue.
struct Pieces {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    /// To wait for room in the queue with a timeout, from the blocking task.
    runtime: tokio::runtime::Handle,
    /// The instance's byte rate for streams, shared by all of them.
    throttle: Throttle,
    /// Bytes not yet queued.
    gathered: BytesMut,
}

impl Pieces {
    fn send(&mut self, piece: Result<Bytes, io::Error>) -> io::Result<()> {
        if let Ok(bytes) = &piece {
            self.throttle.take_blocking(bytes.len());
        }
        let queued = self.runtime.block_on(async {
            tokio::time::timeout(STREAM_STALL_TIMEOUT, self.tx.send(piece)).await
        });
        match queued {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the other instance closed the stream",
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the other instance read nothing for {} s",
                    STREAM_STALL_TIMEOUT.as_secs()
                ),
            )),
        }
    }

    /// Ends the response with an error: the connection is cut, not closed cleanly, so the
    /// other instance cannot take a short stream for a whole one.
    fn fail(&mut self, reason: String) {
        let _ = self.tx.try_send(Err(io::Error::other(reason)));
    }
}

impl Write for Pieces {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.gathered.extend_from_slice(data);
        if self.gathered.len() >= STREAM_PIECE_BYTES {
            let piece = self.gathered.split().freeze();
            self.send(Ok(piece))?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.gathered.is_empty() {
            let piece = self.gathered.split().freeze();
            self.send(Ok(piece))?;
        }
        Ok(())
    }
}

/// The connection's side of a stream: the queue as a body.
struct Received(mpsc::Receiver<Result<Bytes, io::Error>>);

impl futures::Stream for Received {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Streams being sent, per requesting instance and in all. Cheap to clone.
#[derive(Clone)]
pub struct Slots {
    inner: Arc<Mutex<SlotCounts>>,
}

struct SlotCounts {
    /// Streams open per instance (no entry: none).
    per_peer: HashMap<String, usize>,
    /// Streams open in all.
    total: usize,
    /// `federation.relay_uploads_per_peer`.
    max_per_peer: usize,
    /// `federation.relay_uploads`.
    max_total: usize,
}

/// Why no slot was free.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    #[error("this instance already streams {0} files to yours, the most it sends one instance at a time; try again shortly")]
    Peer(usize),
    #[error("all {0} file stream slots are in use; try again shortly")]
    All(usize),
}

/// A stream's place in [`Slots`], given back when dropped.
pub struct Slot {
    slots: Slots,
    peer: String,
}

impl Slots {
    pub fn new(max_per_peer: usize, max_total: usize) -> Slots {
        Slots {
            inner: Arc::new(Mutex::new(SlotCounts {
                per_peer: HashMap::new(),
                total: 0,
                max_per_peer,
                max_total,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotCounts> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for one more stream to `peer`, if it has fewer than its most and all peers
    /// together fewer than theirs.
    pub fn take(&self, peer: &str) -> Result<Slot, Full> {
        let mut counts = self.lock();
        let open = counts.per_peer.get(peer).copied().unwrap_or(0);
        if open >= counts.max_per_peer {
            return Err(Full::Peer(counts.max_per_peer));
        }
        if counts.total >= counts.max_total {
            return Err(Full::All(counts.max_total));
        }
        counts.total += 1;
        counts.per_peer.insert(peer.to_owned(), open + 1);
        Ok(Slot {
            slots: self.clone(),
            peer: peer.to_owned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(open) = counts.per_peer.get_mut(&self.peer) {
            *open -= 1;
            if *open == 0 {
                counts.per_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_peer_and_in_all_and_given_back_when_dropped() {
        let slots = Slots::new(2, 3);
        let a1 = slots.take("a.example").unwrap();
        let _a2 = slots.take("a.example").unwrap();
        assert_eq!(slots.take("a.example").err(), Some(Full::Peer(2)));
        let _b1 = slots.take("b.example").unwrap();
        assert_eq!(slots.take("c.example").err(), Some(Full::All(3)));
        drop(a1);
        let _c1 = slots.take("c.example").unwrap();
        assert_eq!(slots.take("a.example").err(), Some(Full::All(3)));
        assert_eq!(slots.lock().per_peer.len(), 3);
    }

    #[test]
    fn a_query_may_only_name_an_offset_and_a_user_of_the_requesting_instance() {
        let peer = "a.example";
        assert_eq!(parse_query("", peer), Ok((0, None)));
        assert_eq!(parse_query("offset=16384", peer), Ok((16384, None)));
        assert!(parse_query("offset=-1", peer)
            .unwrap_err()
            .contains("\"-1\""));
        assert!(parse_query("offset=1&user=x", peer)
            .unwrap_err()
            .contains("unknown query parameter \"user\""));
        let (_, who) = parse_query("for=%40alice%40A.example&offset=3", peer).unwrap();
        assert_eq!(who.map(|a| a.to_string()), Some("@alice@a.example".into()));
        // Only the requesting instance's own users, with valid nicknames.
        for bad in [
            "for=%40alice%40b.example",
            "for=alice",
            "for=%40%40a.example",
        ] {
            let e = parse_query(bad, peer).unwrap_err();
            assert!(
                e.contains("an instance names only its own users"),
                "{bad}: {e}"
            );
        }
    }
}
