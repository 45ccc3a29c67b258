//! `/library` and `/browse` answer a page at a time, like `/search` (issue 6, finding 11).

use std::path::Path;

use crate::library::{json_lines, upload};
use crate::util::*;

/// How many files the tests list: two full pages and a half.
const FILES: usize = 250;

/// Uploads [`FILES`] small files `track000.ogg`... as alice, and shares them all.
fn alice_with_files(rose: &Instance, a: &Key) {
    let local = tempfile::tempdir().unwrap();
    let files: Vec<(std::path::PathBuf, String)> = (0..FILES)
        .map(|i| {
            let p = local.path().join(format!("f{i}"));
            std::fs::write(&p, format!("track {i}")).unwrap();
            (p, format!("track{i:03}.ogg"))
        })
        .collect();
    let refs: Vec<(&Path, &str)> = files
        .iter()
        .map(|(p, n)| (p.as_path(), n.as_str()))
        .collect();
    upload(rose, a, "alice", &refs);
    assert_exit(&rose.ssh(a, "alice", &["share", "'*.ogg'"]), 0);
}

/// The `name` of every JSON line of a listing.
fn names(out: &std::process::Output) -> Vec<String> {
    assert_exit(out, 0);
    json_lines(&stdout(out))
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn library_and_browse_answer_a_hundred_files_a_page() {
    let rose = Instance::start("127.0.0.10");
    let (a, b) = (Key::new("a"), Key::new("b"));
    alice_with_files(&rose, &a);
    let alice = format!("@alice@{}", rose.domain);
    for (key, user, listing) in [
        (&a, "alice", vec!["library"]),
        (&b, "bob", vec!["browse", alice.as_str()]),
    ] {
        let page = |n: Option<&str>| {
            let mut args = listing.clone();
            args.push("--json");
            if let Some(n) = n {
                args.extend(["--page", n]);
            }
            names(&rose.ssh(key, user, &args))
        };
        let (first, second, third) = (page(None), page(Some("2")), page(Some("3")));
        assert_eq!(
            (first.len(), second.len(), third.len()),
            (100, 100, 50),
            "{listing:?}"
        );
        assert_eq!(first[0], "track000.ogg");
        assert_eq!(second[0], "track100.ogg");
        assert_eq!(third[49], "track249.ogg");
        assert!(page(Some("4")).is_empty(), "{listing:?}: past the end");
        let plain = stdout(&rose.ssh(key, user, &listing));
        assert!(
            plain.contains("track099.ogg") && !plain.contains("track100.ogg"),
            "{plain}"
        );
        assert!(plain.contains("more files: --page 2"), "{plain}");
        assert!(
            !plain.contains("/more"),
            "no shell-only hint in exec form: {plain}"
        );
    }
    let bad = rose.ssh(&a, "alice", &["library", "--page", "0"]);
    assert_exit(&bad, 2);
    assert!(stderr(&bad).contains("\"0\""), "{}", stderr(&bad));
}

#[test]
fn more_continues_the_last_listing_in_the_shell() {
    let rose = Instance::start("127.0.0.10");
    let (a, b) = (Key::new("a"), Key::new("b"));
    alice_with_files(&rose, &a);

    let mut alice = rose.line_session(&a, "alice");
    alice.expect("Welcome to RoseWire");
    alice.send("/library");
    alice.expect("250 files");
    assert!(!alice.output().contains("track100.ogg"), "one page only");
    alice.send("/more");
    alice.expect("track199.ogg");
    assert!(!alice.output().contains("track200.ogg"));
    alice.send("/more");
    alice.expect("track249.ogg");
    alice.send("/more");
    alice.expect("no more files");

    let mut bob = rose.line_session(&b, "bob");
    bob.expect("Welcome to RoseWire");
    bob.send("/browse alice --page 2");
    bob.expect("track199.ogg");
    assert!(!bob.output().contains("track099.ogg"));
    bob.send("/more");
    bob.expect("track249.ogg");
    assert!(!bob.output().contains("--page 4"), "{}", bob.output());
}
