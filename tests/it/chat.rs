//! The local chat between real clients.

use crate::util::*;

#[test]
fn alices_line_is_seen_by_bob() {
    let rose = Instance::start("127.0.0.3");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let bob = rose.line_session(&b, "bob");
    bob.expect("Welcome to RoseWire");
    let said = rose.ssh(&a, "alice", &["say", "hello", "bob"]);
    assert_exit(&said, 0);
    bob.expect("<alice> hello bob");
}

#[test]
fn lines_typed_in_a_shell_reach_the_others_and_persist() {
    let rose = Instance::start("127.0.0.3");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let mut alice = rose.line_session(&a, "alice");
    let bob = rose.line_session(&b, "bob");
    bob.expect("Welcome to RoseWire");
    alice.expect("Welcome to RoseWire");
    alice.send("good morning");
    alice.send("/me waves");
    bob.expect("<alice> good morning");
    bob.expect("* alice waves");
    alice.send("/quit");
    assert!(alice.wait_exit().is_some_and(|s| s.success()));
    bob.expect("alice left");

    let history = rose.ssh(&b, "bob", &["history", "--json"]);
    assert_exit(&history, 0);
    let lines: Vec<serde_json::Value> = stdout(&history)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let said: Vec<&str> = lines.iter().filter_map(|l| l["text"].as_str()).collect();
    assert_eq!(said, ["good morning", "waves"]);
    assert_eq!(lines[0]["from"], format!("@alice@{}", rose.domain));
    let at = lines[0]["at"].as_str().expect("at");
    assert!(
        at.len() == 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
        "not RFC 3339: {at}"
    );
}

#[test]
fn a_new_shell_replays_recent_history() {
    let rose = Instance::start("127.0.0.3");
    let (a, b) = (Key::new("a"), Key::new("b"));
    for i in 0..3 {
        assert_exit(&rose.ssh(&a, "alice", &["say", &format!("line{i}")]), 0);
    }
    let bob = rose.line_session(&b, "bob");
    bob.expect("<alice> line2");
    let out = bob.output();
    let (p0, p2) = (out.find("line0").unwrap(), out.find("line2").unwrap());
    assert!(p0 < p2, "replayed oldest first:\n{out}");
}

#[test]
fn an_escape_sequence_sent_as_chat_never_comes_back_raw() {
    let rose = Instance::start("127.0.0.3");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let bob = rose.line_session(&b, "bob");
    bob.expect("Welcome to RoseWire");
    let mut alice = rose.line_session(&a, "alice");
    alice.expect("Welcome to RoseWire");
    // Clear screen, set the window title, and an 8-bit CSI: all must be defused.
    alice.send("evil\x1b[2J\x1b]0;pwned\x07 \u{9b}31mred done");
    bob.expect("done");
    let raw = bob.output_bytes();
    assert!(
        !raw.contains(&0x1b),
        "ESC reached bob: {:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(!String::from_utf8_lossy(&raw).contains('\u{9b}'));
    let history = stdout(&rose.ssh(&b, "bob", &["history", "--json"]));
    assert!(
        !history.contains("\\u001b") && !history.contains('\x1b'),
        "{history}"
    );
    assert!(history.contains("evil"), "{history}");
}

#[test]
fn an_overlong_line_is_refused_with_its_size() {
    let rose = Instance::start("127.0.0.3");
    let a = Key::new("a");
    let long = "x".repeat(1500);
    let out = rose.ssh(&a, "alice", &["say", &long]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("1024"), "{}", stderr(&out));
    let history = stdout(&rose.ssh(&a, "alice", &["history"]));
    assert!(!history.contains("xxxx"), "nothing was stored: {history}");
}

#[test]
fn a_flood_is_rate_limited_with_a_clear_message() {
    let rose = Instance::start("127.0.0.3");
    let a = Key::new("a");
    let mut alice = rose.line_session(&a, "alice");
    alice.expect("Welcome to RoseWire");
    for i in 0..12 {
        alice.send(&format!("flood{i}"));
    }
    alice.expect("slow down");
    alice.expect("flood0");
    let history = stdout(&rose.ssh(&a, "alice", &["history", "50"]));
    let stored = history.matches("flood").count();
    assert!(
        (1..12).contains(&stored),
        "some lines were refused, {stored} stored:\n{history}"
    );
}

#[test]
fn who_lists_users_with_a_shell_open() {
    let rose = Instance::start("127.0.0.3");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let bob = rose.line_session(&b, "bob");
    bob.expect("Welcome to RoseWire");
    let who = rose.ssh(&a, "alice", &["who", "--json"]);
    assert_exit(&who, 0);
    let users: Vec<serde_json::Value> = stdout(&who)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(users.len(), 1, "{}", stdout(&who));
    assert_eq!(users[0]["nick"], "bob");
    assert_eq!(users[0]["address"], format!("@bob@{}", rose.domain));
    drop(bob);
    assert!(wait_until(|| stdout(&rose.ssh(
        &a,
        "alice",
        &["who", "--json"]
    ))
    .is_empty()));
}
