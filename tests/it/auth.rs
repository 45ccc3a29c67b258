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
fn an_added_key_joins_only_after_logging_in_once_with_its_code() {
    let rose = Instance::start("127.0.0.2");
    let (laptop, phone) = (Key::new("laptop"), Key::new("phone"));
    assert_exit(&rose.ssh(&laptop, "alice", &["who"]), 0);

    let added = rose.ssh(&laptop, "alice", &["keys", "add", &phone.public()]);
    assert_exit(&added, 0);
    let login = confirm_login(&stdout(&added), "alice");
    // Proposed is not added: the phone is still refused as alice.
    assert_exit(&rose.ssh(&phone, "alice", &["who"]), 255);
    let keys = keys_json(&rose, &laptop, "alice");
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys.iter().filter(|k| k["pending"] == true).count(), 1);

    // The holder of the phone's private key logs in once as alice+CODE: that is the proof.
    // That session is alice's, with the phone's key now one of hers.
    let keys = keys_json(&rose, &phone, &login);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k["pending"] == false), "{keys:?}");
    assert_exit(&rose.ssh(&phone, "alice", &["who"]), 0);
    let keys = keys_json(&rose, &phone, "alice");
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k["pending"] == false), "{keys:?}");
    assert_eq!(keys.iter().filter(|k| k["current"] == true).count(), 1);
    // A code works once.
    let again = refusal(&rose, &phone, &login);
    assert!(again.contains("no key waiting"), "{again}");
}

#[test]
fn a_wrong_or_expired_code_is_refused_and_changes_nothing() {
    let rose = Instance::start("127.0.0.2");
    let (laptop, phone) = (Key::new("laptop"), Key::new("phone"));
    assert_exit(&rose.ssh(&laptop, "alice", &["who"]), 0);
    let mut shell = rose.line_session(&laptop, "alice");
    shell.send(&format!("/keys add {}", phone.public()));
    shell.expect("within 10 minutes");
    let login = confirm_login(&shell.output(), "alice");

    let wrong = refusal(&rose, &phone, "alice+AAAAAAAA");
    assert!(wrong.contains("no key waiting for \"alice\""), "{wrong}");
    // Another key cannot use the code either.
    let other = refusal(&rose, &Key::new("other"), &login);
    assert!(other.contains("no key waiting"), "{other}");

    expire_pending_keys(&rose);
    let expired = refusal(&rose, &phone, &login);
    assert!(expired.contains("no key waiting"), "{expired}");
    assert_exit(&rose.ssh(&phone, "alice", &["who"]), 255);
    let keys = keys_json(&rose, &laptop, "alice");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["current"], true);
}

#[test]
fn a_waiting_key_can_be_cancelled() {
    let rose = Instance::start("127.0.0.2");
    let (laptop, phone) = (Key::new("laptop"), Key::new("phone"));
    assert_exit(&rose.ssh(&laptop, "alice", &["who"]), 0);
    let added = rose.ssh(&laptop, "alice", &["keys", "add", &phone.public()]);
    let login = confirm_login(&stdout(&added), "alice");
    let keys = keys_json(&rose, &laptop, "alice");
    let waiting = keys
        .iter()
        .find(|k| k["pending"] == true)
        .expect("a waiting key");
    let fingerprint = waiting["fingerprint"].as_str().unwrap();
    let removed = rose.ssh(&laptop, "alice", &["keys", "remove", fingerprint]);
    assert_exit(&removed, 0);
    assert!(
        stdout(&removed).contains("cancelled"),
        "{}",
        stdout(&removed)
    );
    assert_exit(&rose.ssh(&phone, &login, &["who"]), 255);
    assert_eq!(keys_json(&rose, &laptop, "alice").len(), 1);
}

#[test]
fn a_key_added_by_someone_else_stays_its_holders_and_no_answer_names_its_owner() {
    let rose = Instance::start("127.0.0.2");
    // Key comments would show up in outputs; these name nobody.
    let (m, b) = (Key::new("k1"), Key::new("k2"));
    assert_exit(&rose.ssh(&m, "mallory", &["who"]), 0);
    // mallory proposes bob's public key (from his profile, say) before bob has an account.
    let added = rose.ssh(&m, "mallory", &["keys", "add", &b.public()]);
    assert_exit(&added, 0);
    let login = confirm_login(&stdout(&added), "mallory");
    // It is not mallory's: it neither logs in as mallory nor keeps bob from his nickname.
    assert_exit(&rose.ssh(&b, "mallory", &["who"]), 255);
    assert_exit(&rose.ssh(&b, "bob", &["who"]), 0);
    assert_exit(&rose.ssh(&b, "bob", &["who"]), 0);

    let as_mallory = refusal(&rose, &b, "mallory");
    assert!(
        as_mallory.contains("registered to another nickname"),
        "{as_mallory}"
    );
    let confirming = refusal(&rose, &b, &login);
    assert!(
        confirming.contains("registered to another nickname"),
        "{confirming}"
    );
    let again = rose.ssh(&m, "mallory", &["keys", "add", &b.public()]);
    assert_exit(&again, 0);
    for text in [as_mallory, confirming, stdout(&again), stderr(&again)] {
        assert!(
            !text.to_lowercase().contains("bob"),
            "names the owner: {text}"
        );
    }
    let keys = keys_json(&rose, &m, "mallory");
    assert_eq!(
        keys.iter().filter(|k| k["pending"] == false).count(),
        1,
        "{keys:?}"
    );
}

#[test]
fn look_alike_nicknames_are_refused() {
    let rose = Instance::start("127.0.0.2");
    assert_exit(&rose.ssh(&Key::new("a"), "alice", &["who"]), 0);
    let x = Key::new("x");
    for nick in ["a1ice", "aIice", "alice.", "admin.", "root_", "ro-ot"] {
        let why = refusal(&rose, &x, nick);
        assert!(
            why.contains("looks too much like an existing or reserved nickname"),
            "{nick}: {why}"
        );
    }
    // The same nickname in other case is simply taken.
    let why = refusal(&rose, &x, "ALICE");
    assert!(why.contains("belongs to another key"), "{why}");
    assert_exit(&rose.ssh(&x, "alicia", &["who"]), 0);
}

/// The `NICK+CODE` user name that `/keys add` printed.
fn confirm_login(output: &str, nick: &str) -> String {
    let prefix = format!("{nick}+");
    let start = output
        .find(&prefix)
        .unwrap_or_else(|| panic!("no {prefix}CODE in:\n{output}"));
    output[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '+')
        .collect()
}

/// `keys --json` as `user`, one object per key.
fn keys_json(rose: &Instance, key: &Key, user: &str) -> Vec<serde_json::Value> {
    let out = rose.ssh(key, user, &["keys", "--json"]);
    assert_exit(&out, 0);
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// What a refused login as `user` with `key` is told (keyboard-interactive instructions).
fn refusal(rose: &Instance, key: &Key, user: &str) -> String {
    let out = std::process::Command::new("ssh")
        .args([
            "-o",
            "BatchMode=no",
            "-o",
            "PreferredAuthentications=publickey,keyboard-interactive",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
            "LogLevel=INFO",
        ])
        .args(ssh_options(rose.ssh_port))
        .arg("-i")
        .arg(&key.path)
        .arg(format!("{user}@{}", rose.ip))
        .arg("who")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ssh");
    assert_exit(&out, 255);
    let text = stderr(&out);
    assert!(text.contains("Refused:"), "no reason given: {text}");
    text
}

/// Makes every code waiting in the instance's database expire, as time would.
fn expire_pending_keys(rose: &Instance) {
    let db = rusqlite::Connection::open(rose.data_dir().join("rosewire.db")).expect("open db");
    db.busy_timeout(WAIT).unwrap();
    let n = db
        .execute("UPDATE pending_keys SET expires_at = 0", [])
        .unwrap();
    assert_eq!(n, 1);
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
