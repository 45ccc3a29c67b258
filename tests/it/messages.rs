//! Private messages end to end: real instances (one, or two and a bystander on 127.0.0.2, .3
//! and .4), real OpenSSH clients, a real terminal (tmux) for the online recipient, and the
//! real `age` for sealed messages.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::federation::wait_all_know_all;
use crate::util::*;

/// `msgs ARGS --json` as `user` on `node`: one object per line.
fn msgs_json(node: &Instance, key: &Key, user: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["msgs"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = node.ssh(key, user, &all);
    assert_exit(&out, 0);
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// The state of the message that `user` sent to `to` with `text`, as `user` sees it.
fn state_of(node: &Instance, key: &Key, user: &str, to: &str, text: &str) -> Option<Value> {
    msgs_json(node, key, user, &[to, "100"])
        .into_iter()
        .find(|m| m["text"] == text)
        .map(|m| m["state"].clone())
}

/// `ssh ... ARGS` with `input` on stdin.
fn ssh_with_stdin(
    node: &Instance,
    key: &Key,
    user: &str,
    args: &[&str],
    input: &[u8],
) -> std::process::Output {
    let mut child = node
        .ssh_command(key, user, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ssh");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("ssh output")
}

/// Whether any file under `dir` (the database, its WAL, logs) holds `needle`.
fn any_file_holds(dir: &Path, needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            return any_file_holds(&path, needle);
        }
        std::fs::read(&path)
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
    })
}

#[test]
fn local_messages_unread_at_login_reply_and_ignore() {
    let rose = Instance::start("127.0.0.7");
    let (ka, kb) = (Key::new("a"), Key::new("b"));
    assert_exit(&rose.ssh(&kb, "bob", &["who"]), 0);
    let (alice, bob) = (
        format!("@alice@{}", rose.domain),
        format!("@bob@{}", rose.domain),
    );

    // Bob is away: the message waits, and he is told at login.
    let out = rose.ssh(&ka, "alice", &["msg", "bob", "are you there?"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(&format!("to {bob}: delivered")),
        "{}",
        stdout(&out)
    );
    let mut session = rose.line_session(&kb, "bob");
    session.expect("you have 1 unread private message");
    let list = msgs_json(&rose, &kb, "bob", &[]);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["with"], alice.as_str());
    assert_eq!(list[0]["unread"], 1);

    // Online now: a message shows at once, in the private style, not as chat.
    assert_exit(&rose.ssh(&ka, "alice", &["msg", "bob", "second one"]), 0);
    session.expect("[msg] <alice> second one");
    assert!(
        !session.output().lines().any(|l| l
            .split_once("] ")
            .is_some_and(|(_, rest)| rest == "<alice> second one")),
        "shown as a chat line:\n{}",
        session.output()
    );

    // Reading the conversation: each message once, in order, with the documented fields;
    // the shown message was read when it appeared.
    let shown = msgs_json(&rose, &kb, "bob", &[&alice]);
    let texts: Vec<&str> = shown.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["are you there?", "second one"]);
    let first = &shown[0];
    for field in ["id", "from", "to", "text", "at", "state", "sealed"] {
        assert!(first.get(field).is_some(), "{field} missing: {first}");
    }
    assert_eq!(first["from"], alice.as_str());
    assert_eq!(first["to"], bob.as_str());
    assert_eq!(first["sealed"], false);
    assert_eq!(msgs_json(&rose, &kb, "bob", &[])[0]["unread"], 0);

    // /reply answers the last sender; alice sees it, delivered.
    session.send("/reply got both");
    session.expect(&format!("to {alice}: delivered"));
    assert_eq!(
        state_of(&rose, &ka, "alice", &bob, "got both"),
        Some(Value::from("unread"))
    );

    // Clear errors: unknown user, yourself, empty.
    let out = rose.ssh(&ka, "alice", &["msg", "nobody", "hi"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("no user @nobody@"),
        "{}",
        stderr(&out)
    );
    let out = rose.ssh(&ka, "alice", &["msg", "alice", "me"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("that is you"), "{}", stderr(&out));
    let out = rose.ssh(&ka, "alice", &["msg", "bob"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));

    // Bob ignores alice: her chat lines and messages no longer reach him, in this session
    // and the next; she is not told.
    session.send("/ignore alice");
    session.expect(&format!("ignoring {alice}"));
    assert_exit(&rose.ssh(&ka, "alice", &["say", "ignored chat line"]), 0);
    let out = rose.ssh(&ka, "alice", &["msg", "bob", "ignored message"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("delivered"), "{}", stdout(&out));
    assert_exit(&rose.ssh(&kb, "bob", &["say", "bob still talks"]), 0);
    session.expect("<bob> bob still talks");
    let seen = session.output();
    assert!(!seen.contains("ignored chat line"), "{seen}");
    assert!(!seen.contains("ignored message"), "{seen}");
    let history = stdout(&rose.ssh(&kb, "bob", &["history"]));
    assert!(!history.contains("ignored chat line"), "{history}");
    assert!(history.contains("bob still talks"), "{history}");
    let texts: Vec<String> = msgs_json(&rose, &kb, "bob", &[&alice])
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(!texts.contains(&"ignored message".to_owned()), "{texts:?}");
    let listed = stdout(&rose.ssh(&kb, "bob", &["ignore"]));
    assert_eq!(listed.trim(), alice.to_lowercase());
    // Unignored: she is heard again.
    assert_exit(&rose.ssh(&kb, "bob", &["unignore", &alice]), 0);
    assert_exit(&rose.ssh(&ka, "alice", &["msg", "bob", "heard again"]), 0);
    session.expect("[msg] <alice> heard again");
    let out = rose.ssh(&kb, "bob", &["unignore", &alice]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("you do not ignore"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn messages_cross_instances_reach_only_the_recipients_home() {
    let a = Instance::start_federated("127.0.0.2", &[]);
    let b = Instance::start_federated("127.0.0.3", &["--bootstrap", &a.url()]);
    let c = Instance::start_federated("127.0.0.4", &["--bootstrap", &a.url()]);
    let (ka, kb, kw) = (Key::new("a"), Key::new("b"), Key::new("w"));
    wait_all_know_all(&[&a, &b, &c], &kw);
    assert_exit(&b.ssh(&kb, "bob", &["who"]), 0);
    assert_exit(&a.ssh(&ka, "alice", &["who"]), 0);
    let (alice, bob) = (format!("@alice@{}", a.domain), format!("@bob@{}", b.domain));

    // Bob online on B in a real terminal: alice's message from A shows at once, as private.
    let tmux = Tmux::start(&b.ssh_shell_line(&kb, "bob", "-tt"), 120, 30);
    tmux.expect("the welcome", |s| s.contains("Welcome to RoseWire"));
    let out = a.ssh(&ka, "alice", &["msg", &bob, "secret-a2b-online"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("queued"), "{}", stdout(&out));
    tmux.expect("alice's message", |s| {
        s.contains(&format!("[msg] <{alice}> secret-a2b-online"))
    });
    assert!(
        wait_until(|| state_of(&a, &ka, "alice", &bob, "secret-a2b-online")
            == Some(Value::from("delivered"))),
        "never delivered; A log:\n{}",
        a.log()
    );

    // The other way, alice away: she is told at login.
    assert_exit(
        &b.ssh(&kb, "bob", &["msg", &alice, "secret-b2a-offline"]),
        0,
    );
    assert!(wait_until(|| state_of(
        &b,
        &kb,
        "bob",
        &alice,
        "secret-b2a-offline"
    ) == Some(Value::from("delivered"))));
    let session = a.line_session(&ka, "alice");
    session.expect("you have 1 unread private message");
    let got = msgs_json(&a, &ka, "alice", &[&bob]);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1]["from"], bob.as_str());
    assert_eq!(got[1]["to"], alice.as_str());
    assert_eq!(got[1]["text"], "secret-b2a-offline");
    drop(session);

    // B down: the message waits in A's outbox, queued; B back: delivered once.
    let mut b = b;
    drop(tmux);
    b.stop();
    assert_exit(&a.ssh(&ka, "alice", &["msg", &bob, "secret-while-down"]), 0);
    assert_eq!(
        state_of(&a, &ka, "alice", &bob, "secret-while-down"),
        Some(Value::from("queued"))
    );
    b.restart_after_stop();
    assert!(
        wait_until(|| state_of(&a, &ka, "alice", &bob, "secret-while-down")
            == Some(Value::from("delivered"))),
        "never delivered after the restart; A log:\n{}",
        a.log()
    );
    let at_b: Vec<Value> = msgs_json(&b, &kb, "bob", &[&alice, "100"])
        .into_iter()
        .filter(|m| m["text"] == "secret-while-down")
        .collect();
    assert_eq!(at_b.len(), 1, "delivered once: {at_b:?}");

    // An unknown user on B: a clear error at once.
    let out = a.ssh(
        &ka,
        "alice",
        &["msg", &format!("@nobody@{}", b.domain), "x"],
    );
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("no user @nobody@"),
        "{}",
        stderr(&out)
    );

    // C, a peer of both, never saw any of it: not in its database, not in its log. A holds
    // the texts (the search would have found them).
    // Bob ignores alice, a remote user: her messages are accepted by B (alice is not told)
    // but never kept for him, and her chat lines do not reach him; others still see them.
    assert_exit(&b.ssh(&kb, "bob", &["ignore", &alice]), 0);
    assert_exit(&a.ssh(&ka, "alice", &["msg", &bob, "secret-ignored"]), 0);
    assert_exit(&a.ssh(&ka, "alice", &["say", "chat-ignored"]), 0);
    assert!(wait_until(|| state_of(
        &a,
        &ka,
        "alice",
        &bob,
        "secret-ignored"
    ) == Some(Value::from("delivered"))));
    assert!(wait_until(
        || stdout(&b.ssh(&kw, "watcher", &["history"])).contains("chat-ignored")
    ));
    let bobs = stdout(&b.ssh(&kb, "bob", &["history"]));
    assert!(!bobs.contains("chat-ignored"), "{bobs}");
    assert!(!msgs_json(&b, &kb, "bob", &[&alice, "100"])
        .iter()
        .any(|m| m["text"] == "secret-ignored"));
    assert!(!any_file_holds(&b.data_dir(), "secret-ignored"));

    for text in [
        "secret-a2b-online",
        "secret-b2a-offline",
        "secret-while-down",
    ] {
        assert!(any_file_holds(&a.data_dir(), text), "A should hold {text}");
        assert!(!any_file_holds(&c.data_dir(), text), "C holds {text}");
        assert!(!c.log().contains(text), "C's log holds {text}");
    }
}

#[test]
fn a_sealed_message_round_trip_with_age() {
    let a = Instance::start_federated("127.0.0.2", &[]);
    let b = Instance::start_federated("127.0.0.3", &["--bootstrap", &a.url()]);
    let (ka, kb, kw) = (Key::new("a"), Key::new("b"), Key::new("w"));
    wait_all_know_all(&[&a, &b], &kw);
    assert_exit(&b.ssh(&kb, "bob", &["who"]), 0);
    let (alice, bob) = (format!("@alice@{}", a.domain), format!("@bob@{}", b.domain));
    let note = "the plaintext-only-bob-reads, sealed with age\n";

    // `age -a -R <(ssh A keys @bob@B) < note | ssh A msg --sealed @bob@B`, step by step.
    let keys = a.ssh(&ka, "alice", &["keys", &bob]);
    assert_exit(&keys, 0);
    let dir = tempfile::tempdir().unwrap();
    let recipients = dir.path().join("bob.keys");
    std::fs::write(&recipients, &keys.stdout).unwrap();
    let mut age = std::process::Command::new("age")
        .arg("-a")
        .arg("-R")
        .arg(&recipients)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("age is installed (.ci/run installs it)");
    age.stdin
        .take()
        .unwrap()
        .write_all(note.as_bytes())
        .unwrap();
    let armor = age.wait_with_output().unwrap();
    assert!(armor.status.success());
    let online = b.line_session(&kb, "bob");
    online.expect("Welcome to RoseWire");
    let out = ssh_with_stdin(&a, &ka, "alice", &["msg", "--sealed", &bob], &armor.stdout);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("sealed message"), "{}", stdout(&out));

    // Bob, online, is shown that a sealed message came and the command that reads it.
    online.expect(&format!("[msg] <{alice}> sealed message"));
    online.expect("| age -d -i ~/.ssh/id_ed25519");
    drop(online);
    // Bob sees it sealed, and reads it with `msgs --raw ID | age -d -i KEY`.
    let mut got = Vec::new();
    assert!(wait_until(|| {
        got = msgs_json(&b, &kb, "bob", &[&alice]);
        !got.is_empty()
    }));
    assert_eq!(got[0]["sealed"], true);
    let text = got[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{text}"
    );
    let plain = stdout(&b.ssh(&kb, "bob", &["msgs", &alice]));
    assert!(plain.contains("sealed; read it with:"), "{plain}");
    assert!(plain.contains("msgs --raw"), "{plain}");
    let id = got[0]["id"].to_string();
    let raw = b.ssh(&kb, "bob", &["msgs", "--raw", &id]);
    assert_exit(&raw, 0);
    let mut age = std::process::Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&kb.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    age.stdin.take().unwrap().write_all(&raw.stdout).unwrap();
    let opened = age.wait_with_output().unwrap();
    assert!(
        opened.status.success(),
        "age -d: {}",
        String::from_utf8_lossy(&opened.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&opened.stdout), note);
    // Neither instance ever held the plaintext.
    for node in [&a, &b] {
        assert!(!any_file_holds(
            &node.data_dir(),
            "plaintext-only-bob-reads"
        ));
        assert!(!node.log().contains("plaintext-only-bob-reads"));
    }

    // Not armor: refused, with the reason, and nothing sent.
    let out = ssh_with_stdin(&a, &ka, "alice", &["msg", "--sealed", &bob], b"hello\n");
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("age armor"), "{}", stderr(&out));
    assert_eq!(msgs_json(&a, &ka, "alice", &[&bob]).len(), 1);
}

#[test]
fn message_limits_size_rate_and_forged_senders() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("b.toml");
    std::fs::write(
        &config,
        "[messages]\nmax_text_bytes = 100\nmax_sealed_bytes = 2000\nper_minute = 3\n",
    )
    .unwrap();
    let a = Instance::start_federated("127.0.0.2", &[]);
    let b = Instance::start_federated(
        "127.0.0.3",
        &[
            "--bootstrap",
            &a.url(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let (ka, kb, kw) = (Key::new("a"), Key::new("b"), Key::new("w"));
    wait_all_know_all(&[&a, &b], &kw);
    assert_exit(&b.ssh(&kb, "bob", &["who"]), 0);
    assert_exit(&a.ssh(&ka, "alice", &["who"]), 0);
    let (alice, bob) = (format!("@alice@{}", a.domain), format!("@bob@{}", b.domain));

    // B's own limits, for its own users: size (on the line and on stdin), then rate.
    let long = "x".repeat(101);
    let out = b.ssh(&kb, "bob", &["msg", &alice, &long]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("the limit is 100"),
        "{}",
        stderr(&out)
    );
    let out = ssh_with_stdin(&b, &kb, "bob", &["msg", &alice], long.as_bytes());
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("over 100 bytes"), "{}", stderr(&out));
    for i in 0..3 {
        assert_exit(&b.ssh(&kb, "bob", &["msg", &alice, &format!("n{i}")]), 0);
    }
    let out = b.ssh(&kb, "bob", &["msg", &alice, "one too many"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("slow down"), "{}", stderr(&out));

    // A takes longer messages than B: B refuses one for good, and alice's copy says why.
    let mid = "y".repeat(150);
    assert_exit(&a.ssh(&ka, "alice", &["msg", &bob, &mid]), 0);
    let mut failed = None;
    assert!(wait_until(|| {
        failed = msgs_json(&a, &ka, "alice", &[&bob])
            .into_iter()
            .find(|m| m["text"] == mid.as_str() && m["state"] == "failed");
        failed.is_some()
    }));
    let reason = failed.unwrap()["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("the limit is 100"), "{reason}");
    assert!(reason.contains(&b.domain), "{reason}");
    // B's rate for a remote sender: 3 arrive, the rest wait (429) rather than fail.
    for i in 0..4 {
        assert_exit(&a.ssh(&ka, "alice", &["msg", &bob, &format!("r{i}")]), 0);
    }
    assert!(wait_until(|| msgs_json(&b, &kb, "bob", &[&alice, "100"])
        .len()
        >= 3));
    assert_eq!(
        state_of(&a, &ka, "alice", &bob, "r3"),
        Some(Value::from("queued")),
        "over B's rate: still queued, to be retried"
    );

    // Forged: A's key signs a message for a user of another instance, and one by a user of
    // another instance: both 403, and nothing is kept.
    use rosewire::fed::activity::{Activity, Envelope, Payload};
    use rosewire_shell::Address;
    let key = instance_key_of(&a);
    let inbox = "/api/s2s/inbox";
    for (actor, to) in [
        (
            Address::new("alice", &a.domain),
            Address::new("bob", "elsewhere.test"),
        ),
        (
            Address::new("mallory", "elsewhere.test"),
            Address::new("bob", &b.domain),
        ),
    ] {
        let activity = Activity::new(
            &a.url(),
            actor,
            unix_now(),
            Payload::Message {
                to,
                text: "forged-message".into(),
                sealed: false,
            },
        );
        let body = Envelope::seal(&activity, key.key_id(), |m| key.sign(m)).to_bytes();
        let headers = signature_headers(&key, &b, "POST", inbox, Some(&body), unix_now());
        let (status, text) = http_request(&b, "POST", inbox, &headers, &body);
        assert_eq!(status, 403, "{text}");
    }
    assert!(!any_file_holds(&b.data_dir(), "forged-message"));
}
