//! Forged, replayed, expired and cross-domain requests to a real instance's inbox: each is
//! refused with the documented status and changes nothing.
//!
//! The test signs as a real second instance D: it reads D's instance key from D's data
//! directory, so A fetches and pins D's real key document on first contact.

use std::io::{Read, Write};

use rosewire::fed::activity::{Activity, Envelope, Payload};
use rosewire::fed::identity::InstanceKey;
use rosewire::fed::signature;
use rosewire_shell::Address;

use crate::federation::history_of;
use crate::util::*;

/// Signs as instance `node` (with its real key file).
fn key_of(node: &Instance) -> InstanceKey {
    let text = std::fs::read_to_string(node.data_dir().join("instance_ed25519_key")).unwrap();
    let key = russh::keys::PrivateKey::from_openssh(text).unwrap();
    InstanceKey::new(&key, &node.url()).unwrap()
}

/// A raw HTTP/1.1 request to `to`; returns (status, body).
fn send(
    to: &Instance,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect((to.ip.as_str(), to.http_port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        to.domain,
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// The signature headers for a request to `to`, signed by `key`.
fn signed(
    key: &InstanceKey,
    to: &Instance,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    created: i64,
) -> Vec<(&'static str, String)> {
    let uri = format!("{}{path}", to.url());
    let headers =
        signature::sign(key, method, &uri, body, created, &signature::new_nonce()).unwrap();
    headers
        .pairs()
        .into_iter()
        .map(|(n, v)| (n, v.to_owned()))
        .collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An envelope with a chat line by `actor`, sealed by `key`.
fn line(key: &InstanceKey, origin: &Instance, actor: Address, text: &str) -> Vec<u8> {
    let activity = Activity::new(
        &origin.url(),
        actor,
        now(),
        Payload::Say { text: text.into() },
    );
    Envelope::seal(&activity, key.key_id(), |m| key.sign(m)).to_bytes()
}

#[test]
fn forged_replayed_expired_and_cross_domain_requests_are_refused_and_change_nothing() {
    let a = Instance::start_federated("127.0.0.2", &[]);
    let d = Instance::start_federated("127.0.0.5", &[]);
    let ka = Key::new("a");
    let dkey = key_of(&d);
    let mallory = Address::new("mallory", &d.domain);
    let inbox = "/api/s2s/inbox";
    let texts = |node: &Instance| -> Vec<String> {
        history_of(node, &ka, "alice")
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    };

    // A good request first: the key is pinned and the line applied.
    let body = line(&dkey, &d, mallory.clone(), "genuine");
    let headers = signed(&dkey, &a, "POST", inbox, Some(&body), now());
    let (status, text) = send(&a, "POST", inbox, &headers, &body);
    assert_eq!(status, 202, "{text}");
    assert_eq!(texts(&a), ["genuine"]);

    // Replayed byte for byte: the nonce was seen.
    let (status, text) = send(&a, "POST", inbox, &headers, &body);
    assert_eq!(status, 401, "replay: {text}");

    // Unsigned.
    let fresh = line(&dkey, &d, mallory.clone(), "unsigned");
    let (status, _) = send(&a, "POST", inbox, &[], &fresh);
    assert_eq!(status, 401, "unsigned");

    // Badly signed: a signature by another key under D's key id.
    let other = InstanceKey::generate(&d.url());
    let forged = line(&dkey, &d, mallory.clone(), "forged");
    let headers = signed(&other, &a, "POST", inbox, Some(&forged), now());
    let (status, _) = send(&a, "POST", inbox, &headers, &forged);
    assert_eq!(status, 401, "bad signature");

    // Signed, then the body changed: the digest no longer matches.
    let original = line(&dkey, &d, mallory.clone(), "original");
    let headers = signed(&dkey, &a, "POST", inbox, Some(&original), now());
    let tampered = line(&dkey, &d, mallory.clone(), "tampered");
    let (status, _) = send(&a, "POST", inbox, &headers, &tampered);
    assert_eq!(status, 401, "tampered body");

    // Expired: created more than 300 s ago; and from the future.
    for created in [now() - 400, now() + 400] {
        let body = line(&dkey, &d, mallory.clone(), "stale");
        let headers = signed(&dkey, &a, "POST", inbox, Some(&body), created);
        let (status, _) = send(&a, "POST", inbox, &headers, &body);
        assert_eq!(status, 401, "created {created}");
    }

    // Cross-domain: D signs a line by a user of A (and one of a third domain).
    for actor in [
        Address::new("alice", &a.domain),
        Address::new("eve", "127.0.0.6:1"),
    ] {
        let body = line(&dkey, &d, actor, "impersonation");
        let headers = signed(&dkey, &a, "POST", inbox, Some(&body), now());
        let (status, text) = send(&a, "POST", inbox, &headers, &body);
        assert_eq!(status, 403, "cross-domain: {text}");
    }

    assert_eq!(
        texts(&a),
        ["genuine"],
        "nothing but the genuine line was applied"
    );

    // The same activity again under a fresh signature (a retry): accepted, applied once.
    let once = line(&dkey, &d, mallory.clone(), "once");
    for _ in 0..2 {
        let headers = signed(&dkey, &a, "POST", inbox, Some(&once), now());
        let (status, text) = send(&a, "POST", inbox, &headers, &once);
        assert_eq!(status, 202, "{text}");
    }
    assert_eq!(texts(&a), ["genuine", "once"]);

    // Unsigned GETs of signed endpoints are refused too.
    let (status, _) = send(&a, "GET", "/api/s2s/peers", &[], b"");
    assert_eq!(status, 401, "unsigned GET");
    let (status, _) = send(&a, "GET", "/api/s2s/catalog", &[], b"");
    assert_eq!(status, 401, "unsigned catalog GET");
}
