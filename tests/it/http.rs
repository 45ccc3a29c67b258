//! The plain HTTP endpoint: the request body limit on every route and the landing page.

use std::io::{Read, Write};

use crate::library::upload;
use crate::util::*;

/// The body limit the instances here run with.
const LIMIT: usize = 1024;

fn limited(ip: &str) -> Instance {
    Instance::start_with_config(ip, &format!("[http]\nmax_body_bytes = {LIMIT}\n"))
}

/// Sends `head` (and `body`) on a new connection; reads the response head, without
/// sending anything more.
fn exchange(rose: &Instance, head: &str, body: &[u8]) -> String {
    let mut stream = connect_from(CLIENT_ADDR, (&rose.ip, rose.http_port));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

fn post(path: &str, framing: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: rose\r\n{framing}\r\n")
}

/// One chunk of a chunked body.
fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn an_oversized_body_is_refused_with_413_before_it_is_read() {
    let rose = limited("127.0.0.6");
    // Declared too large: answered at once, though not one byte of the body was sent.
    let declared = exchange(
        &rose,
        &post("/api/s2s/inbox", "Content-Length: 10485760\r\n"),
        b"",
    );
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    assert!(
        declared.to_ascii_lowercase().contains("connection: close"),
        "{declared}"
    );
    // Chunked, no length: answered once past the limit, though the body never ends.
    let mut body = chunk(&[b'x'; LIMIT / 2]);
    body.extend(chunk(&[b'y'; LIMIT / 2]));
    // The last chunk is left open: the client sends nothing more, and never ends the body.
    body.extend_from_slice(b"11\r\none byte too many");
    let chunked = exchange(
        &rose,
        &post("/api/s2s/inbox", "Transfer-Encoding: chunked\r\n"),
        &body,
    );
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    // The server is unharmed.
    assert!(rose.http_get("/healthz").ends_with("ok\n"));
}

#[test]
fn a_body_within_the_limit_reaches_the_routes() {
    let rose = limited("127.0.0.6");
    // No POST route yet: the router's answer (405) shows the body got past the limit.
    let sized = exchange(
        &rose,
        &post("/", &format!("Content-Length: {LIMIT}\r\n")),
        &[b'x'; LIMIT],
    );
    assert!(sized.starts_with("HTTP/1.1 405"), "{sized}");
    let mut body = chunk(&[b'x'; LIMIT]);
    body.extend_from_slice(b"0\r\n\r\n");
    let chunked = exchange(&rose, &post("/", "Transfer-Encoding: chunked\r\n"), &body);
    assert!(chunked.starts_with("HTTP/1.1 405"), "{chunked}");
}

#[test]
fn the_landing_page_counts_peers_and_shared_files() {
    let rose = Instance::start("127.0.0.6");
    let landing = rose.http_get("/");
    assert!(landing.contains("Known peers: 0\n"), "{landing}");
    assert!(landing.contains("Shared files: 0\n"), "{landing}");

    let key = Key::new("a");
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one.txt"), dir.path().join("two.txt"));
    std::fs::write(&one, b"one").unwrap();
    std::fs::write(&two, b"two").unwrap();
    upload(
        &rose,
        &key,
        "alice",
        &[(&one, "one.txt"), (&two, "two.txt")],
    );
    assert_exit(&rose.ssh(&key, "alice", &["share", "'*'"]), 0);
    // The counts are cached for a few seconds; the new count shows once they are counted again.
    assert!(
        wait_until(|| rose.http_get("/").contains("Shared files: 2\n")),
        "{}",
        rose.http_get("/")
    );
}
