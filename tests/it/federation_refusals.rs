//! Forged, replayed, expired and cross-domain requests to a real instance's inbox: each is
//! refused with the documented status and changes nothing.
//!
//! The test signs as a real second instance D: it reads D's instance key from D's data
//! directory, so A fetches and pins D's real key document on first contact.

use rosewire::fed::activity::{Activity, Envelope, Payload};
use rosewire::fed::identity::InstanceKey;
use rosewire_shell::Address;

use crate::federation::history_of;
use crate::util::*;

/// An envelope with a chat line by `actor`, sealed by `key`.
fn line(key: &InstanceKey, origin: &Instance, actor: Address, text: &str) -> Vec<u8> {
    let activity = Activity::new(
        &origin.url(),
        actor,
        unix_now(),
        Payload::Say { text: text.into() },
    );
    Envelope::seal(&activity, key.key_id(), |m| key.sign(m)).to_bytes()
}

#[test]
fn forged_replayed_expired_and_cross_domain_requests_are_refused_and_change_nothing() {
    let a = Instance::start_federated("127.0.0.2", &[]);
    let d = Instance::start_federated("127.0.0.5", &[]);
    let ka = Key::new("a");
    let dkey = instance_key_of(&d);
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
    let headers = signature_headers(&dkey, &a, "POST", inbox, Some(&body), unix_now());
    let (status, text) = http_request(&a, "POST", inbox, &headers, &body);
    assert_eq!(status, 202, "{text}");
    assert_eq!(texts(&a), ["genuine"]);

    // Replayed byte for byte: the nonce was seen.
    let (status, text) = http_request(&a, "POST", inbox, &headers, &body);
    assert_eq!(status, 401, "replay: {text}");

    // Unsigned.
    let fresh = line(&dkey, &d, mallory.clone(), "unsigned");
    let (status, _) = http_request(&a, "POST", inbox, &[], &fresh);
    assert_eq!(status, 401, "unsigned");

    // Badly signed: a signature by another key under D's key id.
    let other = InstanceKey::generate(&d.url());
    let forged = line(&dkey, &d, mallory.clone(), "forged");
    let headers = signature_headers(&other, &a, "POST", inbox, Some(&forged), unix_now());
    let (status, _) = http_request(&a, "POST", inbox, &headers, &forged);
    assert_eq!(status, 401, "bad signature");

    // Signed, then the body changed: the digest no longer matches.
    let original = line(&dkey, &d, mallory.clone(), "original");
    let headers = signature_headers(&dkey, &a, "POST", inbox, Some(&original), unix_now());
    let tampered = line(&dkey, &d, mallory.clone(), "tampered");
    let (status, _) = http_request(&a, "POST", inbox, &headers, &tampered);
    assert_eq!(status, 401, "tampered body");

    // Expired: created more than 300 s ago; and from the future.
    for created in [unix_now() - 400, unix_now() + 400] {
        let body = line(&dkey, &d, mallory.clone(), "stale");
        let headers = signature_headers(&dkey, &a, "POST", inbox, Some(&body), created);
        let (status, _) = http_request(&a, "POST", inbox, &headers, &body);
        assert_eq!(status, 401, "created {created}");
    }

    // Cross-domain: D signs a line by a user of A (and one of a third domain).
    for actor in [
        Address::new("alice", &a.domain),
        Address::new("eve", "127.0.0.6:1"),
    ] {
        let body = line(&dkey, &d, actor, "impersonation");
        let headers = signature_headers(&dkey, &a, "POST", inbox, Some(&body), unix_now());
        let (status, text) = http_request(&a, "POST", inbox, &headers, &body);
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
        let headers = signature_headers(&dkey, &a, "POST", inbox, Some(&once), unix_now());
        let (status, text) = http_request(&a, "POST", inbox, &headers, &once);
        assert_eq!(status, 202, "{text}");
    }
    assert_eq!(texts(&a), ["genuine", "once"]);

    // Unsigned GETs of signed endpoints are refused too.
    let (status, _) = http_request(&a, "GET", "/api/s2s/peers", &[], b"");
    assert_eq!(status, 401, "unsigned GET");
    let (status, _) = http_request(&a, "GET", "/api/s2s/catalog", &[], b"");
    assert_eq!(status, 401, "unsigned catalog GET");
}
