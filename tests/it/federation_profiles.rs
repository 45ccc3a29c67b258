//! Federated profiles end to end: two real instances in dev mode; a user on one asks
//! `/whois` of a user on the other, whose profile is fetched, signed, from its home.

use serde_json::Value;

use crate::util::*;

/// `whois ADDRESS --json` as `user` on `node` sees it.
fn whois_json(node: &Instance, key: &Key, user: &str, address: &str) -> Value {
    let out = node.ssh(key, user, &["whois", address, "--json"]);
    assert_exit(&out, 0);
    serde_json::from_str(stdout(&out).trim()).expect("one JSON object")
}

/// Whether `node` lists `other` among its peers.
fn knows(node: &Instance, key: &Key, other: &Instance) -> bool {
    stdout(&node.ssh(key, "watcher", &["peers", "--json"]))
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|v| v["domain"] == other.domain.as_str())
}

#[test]
fn whois_of_a_remote_user_shows_her_bio_joined_and_keys_from_her_home() {
    let a = Instance::start_federated("127.0.0.2", &[]);
    let b = Instance::start_federated("127.0.0.3", &["--bootstrap", &a.url()]);
    let (ka, kb, kw) = (Key::new("a"), Key::new("b"), Key::new("w"));
    assert!(
        wait_until(|| knows(&a, &kw, &b) && knows(&b, &kw, &a)),
        "A and B never met; A log:\n{}\nB log:\n{}",
        a.log(),
        b.log()
    );

    assert_exit(&b.ssh(&kb, "bob", &["bio", "bob", "on", "B"]), 0);
    let bob = format!("@bob@{}", b.domain);
    // The profile as B itself shows it, and as A fetches it from B.
    let home = whois_json(&b, &kb, "bob", "bob");
    let seen = whois_json(&a, &ka, "alice", &bob);
    assert_eq!(seen["address"], bob.as_str());
    assert_eq!(seen["nick"], "bob");
    assert_eq!(seen["domain"], b.domain.as_str());
    assert_eq!(seen["bio"], "bob on B");
    assert_eq!(seen["joined"], home["joined"]);
    let joined = seen["joined"].as_str().expect("joined");
    assert!(joined.len() == 20 && joined.ends_with('Z'), "{joined}");
    assert_eq!(seen["keys"], home["keys"]);
    let keys = seen["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert!(
        kb.public()
            .contains(keys[0]["public_key"].as_str().unwrap()),
        "{keys:?}"
    );
    assert!(keys[0]["fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("SHA256:"));
    // The plain form too.
    let text = stdout(&a.ssh(&ka, "alice", &["whois", &bob]));
    assert!(text.contains("bio     bob on B"), "{text}");
    assert!(
        text.contains(keys[0]["fingerprint"].as_str().unwrap()),
        "{text}"
    );

    // `keys @bob@B` on A prints bob's key as an authorized_keys line, fetched from B (through
    // WebFinger), named by his address; the same as B prints for him locally.
    let remote_keys = stdout(&a.ssh(&ka, "alice", &["keys", &bob]));
    let blob = |line: &str| line.split_whitespace().nth(1).map(str::to_owned);
    assert_eq!(remote_keys.lines().count(), 1, "{remote_keys}");
    assert_eq!(
        blob(remote_keys.trim()),
        blob(&kb.public()),
        "{remote_keys}"
    );
    assert!(
        remote_keys.trim().ends_with(&format!(" {bob}")),
        "{remote_keys}"
    );
    assert_eq!(stdout(&b.ssh(&kb, "bob", &["keys", "@bob"])), remote_keys);
    let out = a.ssh(&ka, "alice", &["keys", &format!("@nobody@{}", b.domain)]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("nobody"), "{}", stderr(&out));

    // The bio change also travelled to A as a Profile activity, applied without trouble.
    assert!(
        wait_until(|| a.log().contains("a remote profile changed")),
        "no Profile activity reached A; A log:\n{}",
        a.log()
    );
    assert!(!a.log().contains("ERROR"), "A log:\n{}", a.log());
    // A new bio is seen at once: profiles are fetched live.
    assert_exit(&b.ssh(&kb, "bob", &["bio", "--clear"]), 0);
    assert_eq!(whois_json(&a, &ka, "alice", &bob)["bio"], "");

    // A user B does not have: a clear error naming her, exit 1, and A still works.
    let nobody = format!("@nobody@{}", b.domain);
    let out = a.ssh(&ka, "alice", &["whois", &nobody]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains(&nobody), "{err}");
    assert_eq!(whois_json(&a, &ka, "alice", &bob)["nick"], "bob");
}
