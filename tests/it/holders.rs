//! Any holder serves: files are content-addressed, so when several instances share the same
//! content, the downloader's home asks one and, when it fails mid-transfer, another for the
//! rest, from the first byte not yet verified. Every byte is checked against the id whoever
//! sends it.

use std::io::Read as _;
use std::process::{Command, Stdio};

use crate::federation::wait_all_know_all;
use crate::library::{content, upload};
use crate::util::*;

/// Sends `sig` (STOP, CONT) to `node`'s process.
fn signal(node: &Instance, sig: &str) {
    let status = Command::new("kill")
        .args([format!("-{sig}"), node.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_holder_that_stalls_mid_transfer_is_replaced_by_another_and_the_file_arrives_whole() {
    let b = Instance::start_federated("127.0.0.3", &[]);
    let c = Instance::start_federated("127.0.0.4", &["--bootstrap", &b.url()]);
    let a = Instance::start_federated("127.0.0.2", &["--bootstrap", &b.url()]);
    let (ka, kb, kc, kw) = (Key::new("a"), Key::new("b"), Key::new("c"), Key::new("w"));
    wait_all_know_all(&[&a, &b, &c], &kw);
    // The same content shared on B and on C, under other names.
    let bytes = content(48 << 20, 9);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("tape.bin");
    std::fs::write(&local, &bytes).unwrap();
    upload(&b, &kb, "bea", &[(&local, "tape.bin")]);
    assert_exit(&b.ssh(&kb, "bea", &["share", "tape.bin"]), 0);
    upload(&c, &kc, "cid", &[(&local, "copy.bin")]);
    assert_exit(&c.ssh(&kc, "cid", &["share", "copy.bin"]), 0);
    let id = blake3::hash(&bytes).to_hex().to_string();
    for name in ["tape", "copy"] {
        assert!(
            wait_until(|| stdout(&a.ssh(&ka, "alice", &["search", name, "--json"])).contains(&id)),
            "A never found {name}"
        );
    }

    // The download starts from one holder; the reader takes 1 MiB and then waits.
    let mut get = a
        .ssh_command(&ka, "alice", &["get", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = get.stdout.take().unwrap();
    let mut got = vec![0u8; 1 << 20];
    out.read_exact(&mut got).unwrap();
    let streaming = |n: &Instance| n.log().contains("file stream started");
    assert!(wait_until(|| streaming(&b) || streaming(&c)));
    let (serving, other) = if streaming(&b) { (&b, &c) } else { (&c, &b) };
    // It freezes mid-transfer: after the stall timeout A asks the other holder for the rest.
    signal(serving, "STOP");
    out.read_to_end(&mut got).unwrap();
    let status = get.wait().unwrap();
    signal(serving, "CONT");
    let mut err = String::new();
    get.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "get failed: {err}\nA log:\n{}", a.log());
    assert!(got == bytes, "{} bytes, not the file", got.len());
    assert!(
        streaming(other),
        "the other holder never served; its log:\n{}",
        other.log()
    );
    assert!(
        a.log().contains("asking another holder"),
        "A log:\n{}",
        a.log()
    );
}

#[test]
fn a_copy_shared_here_is_read_here_rather_than_relayed() {
    let b = Instance::start_federated("127.0.0.3", &[]);
    let a = Instance::start_federated("127.0.0.2", &["--bootstrap", &b.url()]);
    let (ka, kb, kd) = (Key::new("a"), Key::new("b"), Key::new("d"));
    let bytes = content(300_000, 4);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("song.flac");
    std::fs::write(&local, &bytes).unwrap();
    upload(&b, &kb, "bea", &[(&local, "song.flac")]);
    assert_exit(&b.ssh(&kb, "bea", &["share", "song.flac"]), 0);
    let id = blake3::hash(&bytes).to_hex().to_string();
    assert!(wait_until(|| stdout(&a.ssh(
        &ka,
        "alice",
        &["search", "song", "--json"]
    ))
    .contains(&id)));
    // dora on A shares the same content: alice's get of it is read on A, not relayed.
    upload(&a, &kd, "dora", &[(&local, "mine.flac")]);
    assert_exit(&a.ssh(&kd, "dora", &["share", "mine.flac"]), 0);
    let out = a.ssh(&ka, "alice", &["get", &id]);
    assert_exit(&out, 0);
    assert!(out.stdout == bytes);
    assert!(
        !b.log().contains("file stream started"),
        "B was asked: {}",
        b.log()
    );
}

#[test]
fn an_instances_relay_rate_holds_all_its_streams_together() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("b.toml");
    // 1 MiB a second for every stream together, after a one-second burst.
    std::fs::write(&config, "[federation]\nrelay_bytes_per_second = 1048576\n").unwrap();
    let b = Instance::start_federated("127.0.0.3", &["--config", config.to_str().unwrap()]);
    let a = Instance::start_federated("127.0.0.2", &["--bootstrap", &b.url()]);
    let (ka, kc, kb) = (Key::new("a"), Key::new("c"), Key::new("b"));
    let bytes = content(2 << 20, 5);
    let local = dir.path().join("two.bin");
    std::fs::write(&local, &bytes).unwrap();
    upload(&b, &kb, "bea", &[(&local, "two.bin")]);
    assert_exit(&b.ssh(&kb, "bea", &["share", "two.bin"]), 0);
    let id = blake3::hash(&bytes).to_hex().to_string();
    assert!(wait_until(|| stdout(&a.ssh(
        &ka,
        "alice",
        &["search", "two", "--json"]
    ))
    .contains(&id)));
    // Two users of A download it at once: 4 MiB through a 1 MiB/s budget with a 1 MiB
    // burst take at least 3 s (a lower bound: a slow machine only makes it longer).
    let started = std::time::Instant::now();
    let gets: Vec<_> = [(&ka, "alice"), (&kc, "carl")]
        .into_iter()
        .map(|(key, user)| {
            a.ssh_command(key, user, &["get", &id])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for get in gets {
        let out = get.wait_with_output().unwrap();
        assert_exit(&out, 0);
        assert!(out.stdout == bytes);
    }
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(2800),
        "4 MiB at 1 MiB/s after a 1 MiB burst took only {took:?}"
    );
}

#[test]
fn the_owner_learns_who_downloads_only_where_the_downloaders_home_chose_to_say() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("a2.toml");
    std::fs::write(&config, "[federation]\nreveal_downloader = true\n").unwrap();
    let b = Instance::start_federated("127.0.0.3", &[]);
    // A keeps its users to itself (the default); A2 names them.
    let a = Instance::start_federated("127.0.0.2", &["--bootstrap", &b.url()]);
    let a2 = Instance::start_federated(
        "127.0.0.4",
        &[
            "--bootstrap",
            &b.url(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let (ka, kz, kb) = (Key::new("a"), Key::new("z"), Key::new("b"));
    let bytes = content(200_000, 6);
    let local = dir.path().join("tape.bin");
    std::fs::write(&local, &bytes).unwrap();
    upload(&b, &kb, "bea", &[(&local, "tape.bin")]);
    assert_exit(&b.ssh(&kb, "bea", &["share", "tape.bin"]), 0);
    let id = blake3::hash(&bytes).to_hex().to_string();
    for (node, key, user) in [(&a, &ka, "alfred"), (&a2, &kz, "zoe")] {
        assert!(wait_until(|| stdout(&node.ssh(
            key,
            user,
            &["search", "tape", "--json"]
        ))
        .contains(&id)));
    }
    let mut bea = b.line_session(&kb, "bea");
    bea.expect("Welcome to RoseWire");

    // From A: bea is told nothing, and nothing at B names alfred.
    let out = a.ssh(&ka, "alfred", &["get", &id]);
    assert_exit(&out, 0);
    assert!(out.stdout == bytes);
    // From A2: bea is told who, by address.
    let out = a2.ssh(&kz, "zoe", &["get", &id]);
    assert_exit(&out, 0);
    assert!(out.stdout == bytes);
    bea.expect(&format!(
        "@zoe@{} is downloading tape.bin from you",
        a2.domain
    ));
    let seen = bea.output();
    assert!(!seen.contains("alfred"), "{seen}");
    assert!(!b.log().contains("alfred"), "B's log names alfred");
    bea.send("/quit");
    let _ = bea.wait_exit();
    let mut b = b;
    b.stop();
    let db_holds = |needle: &[u8]| {
        std::fs::read_dir(b.data_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("rosewire.db"))
            .any(|e| {
                std::fs::read(e.path())
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle)
            })
    };
    assert!(
        db_holds(b"bea"),
        "the search of B's database finds its own users"
    );
    assert!(!db_holds(b"alfred"), "B's database names alfred");
}

#[test]
fn a_file_known_only_from_an_instance_blocked_since_is_refused_clearly_and_nothing_is_written() {
    let b = Instance::start_federated("127.0.0.3", &[]);
    let mut a = Instance::start_federated("127.0.0.2", &["--bootstrap", &b.url()]);
    let (ka, kb) = (Key::new("a"), Key::new("b"));
    let bytes = content(100_000, 8);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("gone.bin");
    std::fs::write(&local, &bytes).unwrap();
    upload(&b, &kb, "bea", &[(&local, "gone.bin")]);
    assert_exit(&b.ssh(&kb, "bea", &["share", "gone.bin"]), 0);
    let id = blake3::hash(&bytes).to_hex().to_string();
    assert!(wait_until(|| stdout(&a.ssh(
        &ka,
        "alice",
        &["search", "gone", "--json"]
    ))
    .contains(&id)));
    // A's operator blocks B: its files are forgotten, and a get of one says so.
    let config = dir.path().join("a.toml");
    std::fs::write(
        &config,
        format!("[federation]\nblock = [\"{}\"]\n", b.domain),
    )
    .unwrap();
    a.restart_with(&[
        "--bootstrap",
        &b.url(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let out = a.ssh(&ka, "alice", &["get", &id]);
    assert_exit(&out, 1);
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains(&format!("no shared file has id {id}")),
        "{}",
        stderr(&out)
    );
    assert!(!b.log().contains("file stream started"), "B was asked");
    // Nothing in anyone's downloads/ (no user folder at all is nothing too).
    let written = std::fs::read_dir(a.data_dir().join("users")).is_ok_and(|users| {
        users.flatten().any(|u| {
            std::fs::read_dir(u.path().join("downloads")).is_ok_and(|mut d| d.next().is_some())
        })
    });
    assert!(!written, "something was written in downloads/");
}
