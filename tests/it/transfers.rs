//! Download slots, `/transfers` and `/cancel` end to end: a user runs at most
//! `library.max_downloads_per_user` downloads at once across their sessions; the others wait
//! in order, told their place, and a waiting or running one can be cancelled.

use std::io::Read as _;
use std::process::Stdio;

use crate::library::{content, upload};
use crate::util::*;

#[test]
fn past_the_users_slots_a_get_waits_its_turn_and_cancel_stops_one() {
    let rose = Instance::start_with_config("127.0.0.11", "[library]\nmax_downloads_per_user = 1\n");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let local = tempfile::tempdir().unwrap();
    // Larger than what the SSH window and the socket buffers hold, so a reader that does not
    // read keeps its download (and the slot) running.
    let bytes = content(24 << 20, 7);
    let src = local.path().join("big.bin");
    std::fs::write(&src, &bytes).unwrap();
    upload(&rose, &a, "alice", &[(&src, "big.bin")]);
    assert_exit(&rose.ssh(&a, "alice", &["share", "big.bin"]), 0);
    let id = blake3::hash(&bytes).to_hex().to_string();

    // Bob's first download holds his one slot: its reader does not read.
    let mut first = rose
        .ssh_command(&b, "bob", &["get", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // His shell's /get waits, and says so in /transfers; /cancel stops it.
    let tmux = Tmux::start(&rose.ssh_shell_line(&b, "bob", "-tt"), 120, 30);
    tmux.expect("the welcome", |s| s.contains("Welcome to RoseWire"));
    // The exec download has started once the shell's would wait: poll /transfers.
    let waiting = wait_until(|| {
        tmux.type_text(&format!("/get {id}"));
        tmux.send_keys(&["Enter"]);
        tmux.type_text("/transfers");
        tmux.send_keys(&["Enter"]);
        let screen = tmux.expect("the listing", |s| {
            s.contains("waiting for a slot") || s.contains("saved big.bin")
        });
        if screen.contains("waiting for a slot: 0 of your downloads ahead") {
            return true;
        }
        // It ran at once (the exec download had not begun): try again.
        tmux.type_text("/cancel 1");
        tmux.send_keys(&["Enter"]);
        false
    });
    assert!(waiting, "never waited:\n{}", tmux.capture());
    // The listing's line (the status bar says "waiting" too, unnumbered).
    let numbered = |screen: &str| {
        screen
            .lines()
            .rev()
            .filter(|l| l.contains("waiting for a slot: 0 of your downloads ahead"))
            .find_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
    };
    let screen = tmux.expect("a numbered waiting transfer", |s| numbered(s).is_some());
    let n = numbered(&screen).expect("a numbered transfer");
    tmux.type_text(&format!("/cancel {n}"));
    tmux.send_keys(&["Enter"]);
    tmux.expect("the cancel", |s| s.contains("cancelled get big.bin"));
    tmux.type_text("/transfers");
    tmux.send_keys(&["Enter"]);
    tmux.expect("nothing left", |s| {
        s.contains("no downloads running or waiting")
    });
    tmux.type_text("/cancel 99");
    tmux.send_keys(&["Enter"]);
    tmux.expect("an unknown number", |s| s.contains("no transfer 99 here"));

    // A second exec download waits, told its place on stderr, and completes once the first
    // one ends.
    let mut second = rose
        .ssh_command(&b, "bob", &["get", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut second_err = second.stderr.take().unwrap();
    let mut said = Vec::new();
    let mut chunk = [0u8; 256];
    while !String::from_utf8_lossy(&said).contains("waiting for a download slot") {
        let n = second_err.read(&mut chunk).unwrap();
        assert!(n > 0, "stderr ended: {}", String::from_utf8_lossy(&said));
        said.extend_from_slice(&chunk[..n]);
    }
    assert!(
        String::from_utf8_lossy(&said).contains("0 of your downloads ahead"),
        "{}",
        String::from_utf8_lossy(&said)
    );
    let _ = first.kill();
    let _ = first.wait();
    let mut got = Vec::new();
    second.stdout.take().unwrap().read_to_end(&mut got).unwrap();
    assert!(second.wait().unwrap().success());
    assert!(got == bytes, "{} bytes, not the file", got.len());

    // /transfers in exec form says where it works.
    let out = rose.ssh(&b, "bob", &["transfers"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("interactive shell"),
        "{}",
        stderr(&out)
    );
}
