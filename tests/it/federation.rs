//! Federation end to end: real instances on 127.0.0.2, .3 and .4 in dev mode, talking signed
//! HTTP on loopback, reached by real OpenSSH clients.

use serde_json::Value;

use crate::library::upload;
use crate::util::*;

/// `ssh USER@instance peers --json`, as domains.
pub(crate) fn peers_of(node: &Instance, key: &Key, user: &str) -> Vec<String> {
    let out = node.ssh(key, user, &["peers", "--json"]);
    assert_exit(&out, 0);
    stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["domain"].as_str().map(str::to_owned))
        .collect()
}

/// The chat history of `node` as (from, text), oldest first.
pub(crate) fn history_of(node: &Instance, key: &Key, user: &str) -> Vec<(String, String)> {
    let out = node.ssh(key, user, &["history", "500", "--json"]);
    assert_exit(&out, 0);
    stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            (
                v["from"].as_str().unwrap_or_default().to_owned(),
                v["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until every node lists every other as a peer.
pub(crate) fn wait_all_know_all(nodes: &[&Instance], key: &Key) {
    for node in nodes {
        let others: Vec<&str> = nodes
            .iter()
            .filter(|n| n.domain != node.domain)
            .map(|n| n.domain.as_str())
            .collect();
        let mut last = Vec::new();
        let known = wait_until(|| {
            last = peers_of(node, key, "watcher");
            others.iter().all(|o| last.iter().any(|p| p == o))
        });
        assert!(
            known,
            "{} knows only {last:?}, not all of {others:?}; log:\n{}",
            node.domain,
            node.log()
        );
    }
}

#[test]
fn three_instances_find_each_other_and_share_chat_and_files() {
    let a = Instance::start_federated("127.0.0.2", &[]);
    let b = Instance::start_federated("127.0.0.3", &["--bootstrap", &a.url()]);
    let c = Instance::start_federated("127.0.0.4", &["--bootstrap", &b.url()]);
    let (ka, kc, kw, kcarol) = (
        Key::new("a"),
        Key::new("c"),
        Key::new("w"),
        Key::new("carol"),
    );
    // C learned A only through gossip (B's peers), and A learned C when C asked it.
    wait_all_know_all(&[&a, &b, &c], &kw);

    // A line said on A reaches a shell on C as @alice@A, and C's history.
    let bob = c.line_session(&kc, "bob");
    bob.expect("Welcome to RoseWire");
    assert_exit(&a.ssh(&ka, "alice", &["say", "hello from A"]), 0);
    bob.expect(&format!("<@alice@{}> hello from A", a.domain));
    let history = history_of(&c, &kc, "bob");
    assert!(
        history.contains(&(format!("@alice@{}", a.domain), "hello from A".into())),
        "{history:?}"
    );
    // Text is sanitized on the receiving side exactly like local text.
    assert_exit(
        &a.ssh(&ka, "alice", &["say", "bell\x07 and \x1b[31mred"]),
        0,
    );
    bob.expect("bell and red");
    assert!(
        !bob.output().contains('\x1b'),
        "no escape reached the shell"
    );

    // A file shared on C is found by search on A, with its owner's full address.
    let dir = tempfile::tempdir().unwrap();
    let song = dir.path().join("song.flac");
    std::fs::write(&song, b"la la la, a federated song").unwrap();
    upload(&c, &kcarol, "carol", &[(&song, "music/song.flac")]);
    assert_exit(&c.ssh(&kcarol, "carol", &["share", "song.flac"]), 0);
    let owner = format!("@carol@{}", c.domain);
    let mut found = String::new();
    assert!(
        wait_until(|| {
            found = stdout(&a.ssh(&ka, "alice", &["search", "song", "--json"]));
            found.contains(&owner)
        }),
        "search on A did not find carol's song: {found:?}; C log:\n{}",
        c.log()
    );
    let hit: Value = serde_json::from_str(found.lines().next().unwrap()).unwrap();
    assert_eq!(hit["name"], "song.flac");
    // instance: and user: filters reach remote rows.
    let by_instance = stdout(&a.ssh(
        &ka,
        "alice",
        &["search", &format!("instance:{} song", c.domain), "--json"],
    ));
    assert!(by_instance.contains(&owner), "{by_instance}");
    let by_user = stdout(&a.ssh(
        &ka,
        "alice",
        &["search", &format!("user:{owner}"), "--json"],
    ));
    assert!(by_user.contains("song.flac"), "{by_user}");

    // Unsharing travels too.
    assert_exit(&c.ssh(&kcarol, "carol", &["unshare", "song.flac"]), 0);
    assert!(
        wait_until(
            || !stdout(&a.ssh(&ka, "alice", &["search", "song", "--json"])).contains(&owner)
        ),
        "the unshare did not reach A"
    );
}

#[test]
fn files_shared_before_two_instances_met_are_pulled_on_first_contact() {
    let b = Instance::start_federated("127.0.0.3", &[]);
    let kb = Key::new("b");
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..7 {
        let path = dir.path().join(format!("tape{i}.bin"));
        std::fs::write(&path, format!("tape number {i}")).unwrap();
        files.push(path);
    }
    let named: Vec<(&std::path::Path, String)> = files
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_path(), format!("tape{i}.bin")))
        .collect();
    let named: Vec<(&std::path::Path, &str)> =
        named.iter().map(|(p, n)| (*p, n.as_str())).collect();
    upload(&b, &kb, "bea", &named);
    assert_exit(&b.ssh(&kb, "bea", &["share", "tape*"]), 0);

    let a = Instance::start_federated("127.0.0.2", &["--bootstrap", &b.url()]);
    let ka = Key::new("a");
    let mut found = 0;
    assert!(
        wait_until(|| {
            found = stdout(&a.ssh(&ka, "alice", &["search", "tape*", "--json"]))
                .lines()
                .count();
            found == 7
        }),
        "A found {found} of B's 7 files; A log:\n{}",
        a.log()
    );
    let browse = stdout(&a.ssh(
        &ka,
        "alice",
        &["browse", &format!("@bea@{}", b.domain), "--json"],
    ));
    assert_eq!(browse.lines().count(), 7, "{browse}");
}

#[test]
fn a_stopped_instance_gets_each_missed_line_once_in_order() {
    let a = Instance::start_federated("127.0.0.2", &[]);
    let mut c = Instance::start_federated("127.0.0.4", &["--bootstrap", &a.url()]);
    let (ka, kc, kw) = (Key::new("a"), Key::new("c"), Key::new("w"));
    wait_all_know_all(&[&a, &c], &kw);
    assert!(c.stop().success());
    let said: Vec<String> = (0..5).map(|i| format!("missed line {i}")).collect();
    for line in &said {
        assert_exit(&a.ssh(&ka, "alice", &["say", line]), 0);
    }
    // A retries (with backoff) while C is down.
    assert!(
        wait_until(|| stdout(&a.ssh(&ka, "alice", &["peers", "--json"])).contains("\"backoff\"")),
        "A never noticed C was down"
    );
    c.restart_after_stop();
    let alice = format!("@alice@{}", a.domain);
    let mut got = Vec::new();
    assert!(
        wait_until(|| {
            got = history_of(&c, &kc, "carol")
                .into_iter()
                .filter(|(from, _)| *from == alice)
                .map(|(_, text)| text)
                .collect();
            got.len() >= said.len()
        }),
        "C got {got:?}; A log:\n{}",
        a.log()
    );
    // Exactly once and in order, even after more polling time.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let got: Vec<String> = history_of(&c, &kc, "carol")
        .into_iter()
        .filter(|(from, _)| *from == alice)
        .map(|(_, text)| text)
        .collect();
    assert_eq!(got, said);
    assert!(
        wait_until(|| stdout(&a.ssh(&ka, "alice", &["peers", "--json"])).contains("\"ok\"")),
        "C is back to ok at A"
    );
}

#[test]
fn a_blocked_instance_can_neither_deliver_nor_be_gossiped_in() {
    // C first, to learn its domain (IP:PORT) for A's block list.
    let mut c = Instance::start_federated("127.0.0.4", &[]);
    let config = tempfile::tempdir().unwrap();
    let toml = config.path().join("a.toml");
    std::fs::write(&toml, format!("[federation]\nblock = [\"{}\"]\n", c.domain)).unwrap();
    let a = Instance::start_federated("127.0.0.2", &["--config", toml.to_str().unwrap()]);
    let b = Instance::start_federated("127.0.0.3", &["--bootstrap", &a.url()]);
    // C joins through B, which knows A: C learns A by gossip and tries to deliver to it.
    c.restart_with(&["--bootstrap", &b.url()]);
    let (ka, kb, kc, kw) = (Key::new("a"), Key::new("b"), Key::new("c"), Key::new("w"));
    wait_all_know_all(&[&b, &c], &kw);
    assert!(
        wait_until(|| peers_of(&c, &kc, "carol").contains(&a.domain)),
        "C never heard of A through B"
    );
    assert_exit(&c.ssh(&kc, "carol", &["say", "from the blocked one"]), 0);
    assert_exit(&b.ssh(&kb, "bea", &["say", "from B"]), 0);
    let from_b = format!("@bea@{}", b.domain);
    assert!(
        wait_until(|| history_of(&a, &ka, "alice")
            .iter()
            .any(|(f, _)| *f == from_b)),
        "B's line reached A"
    );
    // C's delivery to A was tried and refused.
    assert!(
        wait_until(|| a.log().contains("blocked")),
        "A never refused C; A log:\n{}",
        a.log()
    );
    // A asks B for its peers (which include C) several more times: C stays out.
    let before = a.log().matches("gossip: asked").count();
    assert!(
        wait_until(|| a.log().matches("gossip: asked").count() >= before + 3),
        "A stopped gossiping; log:\n{}",
        a.log()
    );
    assert!(
        !peers_of(&a, &ka, "alice").contains(&c.domain),
        "A took the blocked C in"
    );
    assert!(
        !history_of(&a, &ka, "alice")
            .iter()
            .any(|(_, t)| t == "from the blocked one"),
        "C's line reached A"
    );
}

#[test]
fn a_signed_fetch_of_the_instance_document_introduces_the_fetcher() {
    let a = Instance::start_federated("127.0.0.2", &[]);
    let c = Instance::start_federated("127.0.0.3", &[]);
    let d = Instance::start_federated("127.0.0.4", &[]);
    let kw = Key::new("watcher");

    // D's fetch is unsigned: it introduces nobody.
    let (status, _) = http_request(&a, "GET", "/api/s2s/instance", &[], b"");
    assert_eq!(status, 200);
    // C's is signed with C's instance key: A answers, checks the signature against C's own
    // document, and learns C; C never asked A for peers nor delivered anything.
    let answer = a.signed_get(&c, "/api/s2s/instance");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut known = Vec::new();
    assert!(
        wait_until(|| {
            known = peers_of(&a, &kw, "watcher");
            known.contains(&c.domain)
        }),
        "A knows {known:?}; A log:\n{}",
        a.log()
    );
    assert!(!known.contains(&d.domain), "{known:?}");
}
