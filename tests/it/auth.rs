//! Who may log in as whom.

use crate::util::*;

#[test]
fn the_first_key_claims_a_nickname_and_another_key_is_refused_even_after_a_restart() {
    let mut rose = Instance::start("127.0.0.2");
    let (a, b) = (Key::new("a"), Key::new("b"));
    assert_exit(&rose.ssh(&a, "alice", &["who"]), 0);
    let refused = rose.ssh(&b, "alice", &["who"]);
    assert_exit(&refused, 255);
    assert!(
        stderr(&refused).contains("Permission denied"),
        "{}",
        stderr(&refused)
    );
    // Case does not make a new nickname.
    assert_exit(&rose.ssh(&b, "ALICE", &["who"]), 255);

    rose.restart();
    assert_exit(&rose.ssh(&b, "alice", &["who"]), 255);
    assert_exit(&rose.ssh(&a, "alice", &["who"]), 0);
    // Key b can still claim a free nickname of its own.
    assert_exit(&rose.ssh(&b, "bob", &["who"]), 0);
}

#[test]
fn a_key_owns_one_nickname_only() {
    let rose = Instance::start("127.0.0.2");
    let a = Key::new("a");
    assert_exit(&rose.ssh(&a, "alice", &["who"]), 0);
    assert_exit(&rose.ssh(&a, "mallory", &["who"]), 255);
    // The refused claim left the nickname free for someone else.
    assert_exit(&rose.ssh(&Key::new("m"), "mallory", &["who"]), 0);
}

#[test]
fn the_owner_adds_a_second_key_which_then_logs_in() {
    let rose = Instance::start("127.0.0.2");
    let (laptop, phone) = (Key::new("laptop"), Key::new("phone"));
    assert_exit(&rose.ssh(&laptop, "alice", &["who"]), 0);
    assert_exit(&rose.ssh(&phone, "alice", &["who"]), 255);

    let pubkey = phone.public();
    let added = rose.ssh(&laptop, "alice", &["keys", "add", &pubkey]);
    assert_exit(&added, 0);
    assert!(
        stdout(&added).contains("added key SHA256:"),
        "{}",
        stdout(&added)
    );

    assert_exit(&rose.ssh(&phone, "alice", &["who"]), 0);
    let keys = rose.ssh(&phone, "alice", &["keys", "--json"]);
    assert_exit(&keys, 0);
    let lines: Vec<serde_json::Value> = stdout(&keys)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2, "{}", stdout(&keys));
    assert_eq!(lines.iter().filter(|k| k["current"] == true).count(), 1);
}

#[test]
fn a_malformed_key_is_refused_and_nothing_is_added() {
    let rose = Instance::start("127.0.0.2");
    let a = Key::new("a");
    let bad = rose.ssh(&a, "alice", &["keys", "add", "ssh-ed25519", "notbase64!"]);
    assert_exit(&bad, 2);
    assert!(
        stderr(&bad).contains("not an OpenSSH public key"),
        "{}",
        stderr(&bad)
    );
    let keys = rose.ssh(&a, "alice", &["keys"]);
    assert_eq!(stdout(&keys).lines().count(), 1, "{}", stdout(&keys));
}

#[test]
fn impossible_nicknames_are_refused() {
    let rose = Instance::start("127.0.0.2");
    let a = Key::new("a");
    for nick in ["root", "admin", "-dash", &"x".repeat(25)] {
        assert_exit(&rose.ssh(&a, nick, &["who"]), 255);
    }
    assert_exit(&rose.ssh(&a, "ok.nick_1", &["who"]), 0);
}

#[test]
fn a_client_without_a_key_is_told_how_to_make_one() {
    let rose = Instance::start("127.0.0.2");
    let out = std::process::Command::new("ssh")
        .args(["-p", &rose.ssh_port.to_string(), "-b", CLIENT_ADDR])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=no",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=keyboard-interactive",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
            "LogLevel=INFO",
        ])
        .arg(format!("alice@{}", rose.ip))
        .arg("who")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ssh");
    assert_exit(&out, 255);
    let err = stderr(&out);
    assert!(err.contains("ssh-keygen -t ed25519"), "{err}");
}

#[test]
fn identity_comes_from_the_verified_key_not_the_offered_one() {
    // OpenSSH offers every key in turn; it may offer alice's public key without holding its
    // private half. Give the client alice's .pub file next to another private key: the offer
    // of alice's key succeeds as an offer, but the signature is made by mallory's key, which
    // must not be accepted as alice.
    let rose = Instance::start("127.0.0.2");
    let (alice, mallory) = (Key::new("alice"), Key::new("mallory"));
    assert_exit(&rose.ssh(&alice, "alice", &["who"]), 0);
    std::fs::copy(
        alice.path.with_extension("pub"),
        mallory.path.with_extension("pub"),
    )
    .unwrap();
    let out = rose.ssh(&mallory, "alice", &["who"]);
    assert_exit(&out, 255);
}
