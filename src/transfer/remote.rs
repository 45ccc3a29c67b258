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
use crate::fed::client::{Client, FetchError as CallError};
use crate::fed::files::{CONTENT_TYPE, FILES_PATH};

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
) -> Result<Pieces, FetchError> {
    let name = d.name.clone();
    let Some(id) = encoding::parse_id(&d.hash) else {
        return Err(remote(d, domain, format!("{:?} is not a file id", d.hash)));
    };
    let mut url = format!("{}{FILES_PATH}{}", client.scheme().base_url(domain), d.hash);
    if offset > 0 {
        url.push_str(&format!("?offset={offset}"));
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
        let decoded = encoding::decode(body, id, size, offset, |verified| {
            piece.extend_from_slice(&verified);
            if piece.len() < REMOTE_PIECE_BYTES {
                return true;
            }
            let full = std::mem::replace(&mut piece, Vec::with_capacity(REMOTE_PIECE_BYTES));
            tx.blocking_send(Ok(full)).is_ok()
        });
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
                    reason: source.to_string().to_lowercase(),
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
