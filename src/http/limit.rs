//! The request body limit, applied to every request before it is routed.
//!
//! A body declared larger than the limit (`Content-Length`) is answered 413 before any of it
//! is read. A body without a declared length (chunked) is read until it passes the limit,
//! then answered 413 the same way: the server never holds more than the limit and one read.
//! A body within the limit is read whole, within [`BODY_READ_TIMEOUT`], and handed on with
//! its `Content-Length` set, so routes can use `warp::body::content_length_limit` and
//! `warp::body::bytes` whatever the client sent.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use hyper::{Request, StatusCode};
use warp::Reply;

/// A request body must arrive whole within this time once its head is in: a client
/// trickling a body cannot hold a connection (and its place) for longer.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Reads the body of `request`, at most `limit` bytes; the request with its body in memory,
/// or the response that refuses it (413, 408 or 400, each closing the connection).
pub async fn read_body<B>(
    request: Request<B>,
    limit: u64,
) -> Result<Request<Full<Bytes>>, warp::reply::Response>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if declared_length(&request).is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let (mut head, body) = request.into_parts();
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, cap).collect()).await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large(limit)),
        Ok(Err(e)) => {
            tracing::debug!("request body not read: {e}");
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "the request body could not be read\n".into(),
            ));
        }
        Err(_) => {
            return Err(refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {BODY_READ_TIMEOUT:?}\n"),
            ))
        }
    };
    head.headers.remove(TRANSFER_ENCODING);
    head.headers
        .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Ok(Request::from_parts(head, Full::new(bytes)))
}

/// The `Content-Length` the client declared, if any (hyper has refused a malformed one).
fn declared_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large(limit: u64) -> warp::reply::Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than the limit of {limit} bytes\n"),
    )
}

/// A refusal that also closes the connection: the rest of the body, if any, is never read.
fn refuse(status: StatusCode, text: String) -> warp::reply::Response {
    let mut response = warp::reply::with_status(text, status).into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream::{self, StreamExt};
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    type Chunks =
        StreamBody<futures::stream::BoxStream<'static, Result<Frame<Bytes>, std::io::Error>>>;

    /// A chunked body: `chunks` of `size` bytes, then nothing ever again (a client that
    /// keeps the body open).
    fn endless_after(chunks: usize, size: usize) -> Chunks {
        let sent =
            stream::iter((0..chunks).map(move |_| Ok(Frame::data(Bytes::from(vec![b'x'; size])))));
        StreamBody::new(sent.chain(stream::pending()).boxed())
    }

    fn post<B>(body: B, length: Option<u64>) -> Request<B> {
        let mut request = Request::post("/api/s2s/inbox").body(body).unwrap();
        if let Some(n) = length {
            request
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        request
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        // The body never ends: only a refusal that reads nothing can return.
        let refused = read_body(post(endless_after(0, 0), Some(1025)), 1024)
            .await
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(refused.headers()[CONNECTION], "close");
    }

    #[tokio::test]
    async fn a_chunked_body_is_refused_once_it_passes_the_limit() {
        // Passes 1024 bytes on the third chunk and never ends: the refusal cannot wait for it.
        let refused = read_body(post(endless_after(3, 500), None), 1024)
            .await
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_chunked_body_within_the_limit_arrives_whole_with_its_length() {
        let chunks = stream::iter([b"hello ".as_slice(), b"world"])
            .map(|c| Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(c))));
        let mut request = post(StreamBody::new(chunks), None);
        request
            .headers_mut()
            .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        let read = read_body(request, 11).await.unwrap();
        assert_eq!(read.headers()[CONTENT_LENGTH], "11");
        assert!(read.headers().get(TRANSFER_ENCODING).is_none());
        let body = read.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hello world");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_is_refused_after_the_timeout() {
        let refused = read_body(post(endless_after(1, 10), Some(20)), 1024)
            .await
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::REQUEST_TIMEOUT);
    }
}
