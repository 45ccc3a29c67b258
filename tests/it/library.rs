//! The library end to end: upload with real `sftp`, share, search, and download with `get`.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::*;

/// Uploads `files` (local path, name in library/) with one `sftp -b` batch; asserts success.
pub(crate) fn upload(rose: &Instance, key: &Key, user: &str, files: &[(&Path, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("batch");
    let mut text = String::new();
    for (local, name) in files {
        if let Some((folder, _)) = name.rsplit_once('/') {
            // `-` makes sftp carry on if the folder already exists.
            text.push_str(&format!("-mkdir \"library/{folder}\"\n"));
        }
        text.push_str(&format!("put \"{}\" \"library/{name}\"\n", local.display()));
    }
    std::fs::write(&batch, text).unwrap();
    let out = Command::new("sftp")
        .args([
            "-P",
            &rose.ssh_port.to_string(),
            "-o",
            &format!("BindAddress={CLIENT_ADDR}"),
        ])
        .args(ssh_options(rose.ssh_port).iter().skip(4))
        .arg("-i")
        .arg(&key.path)
        .arg("-b")
        .arg(&batch)
        .arg(format!("{user}@{}", rose.ip))
        .stdin(Stdio::null())
        .output()
        .expect("run sftp");
    assert_exit(&out, 0);
}

/// Deterministic bytes of a given length (not all zeros, so a truncation or shift shows).
pub(crate) fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

pub(crate) fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn share_search_get_is_byte_identical() {
    let rose = Instance::start("127.0.0.10");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let local = tempfile::tempdir().unwrap();
    let cases: [(&str, usize); 4] = [
        ("empty.bin", 0),
        ("one.bin", 1),
        ("ten-mib.bin", 10 << 20),
        ("Café del Mar – ñandú 日本.flac", 70_001),
    ];
    let mut uploads = Vec::new();
    for (i, (name, len)) in cases.iter().enumerate() {
        let path = local.path().join(format!("src{i}"));
        std::fs::write(&path, content(*len, i as u8)).unwrap();
        uploads.push((path, *name));
    }
    let refs: Vec<(&Path, &str)> = uploads.iter().map(|(p, n)| (p.as_path(), *n)).collect();
    upload(&rose, &a, "alice", &refs);
    assert_exit(&rose.ssh(&a, "alice", &["share", "'*'"]), 0);

    for (i, (name, len)) in cases.iter().enumerate() {
        let expected = content(*len, i as u8);
        let word = name.split(['.', ' ']).next().unwrap();
        let found = rose.ssh(&b, "bob", &["search", &format!("\"{word}\""), "--json"]);
        assert_exit(&found, 0);
        let hits = json_lines(&stdout(&found));
        let hit = hits
            .iter()
            .find(|h| h["name"] == *name)
            .unwrap_or_else(|| panic!("{name} not found: {}", stdout(&found)));
        assert_eq!(hit["size"], *len as u64);
        assert_eq!(hit["owner"], format!("@alice@{}", rose.domain));
        let id = hit["id"].as_str().unwrap();
        assert_eq!(
            id,
            blake3::hash(&expected).to_hex().as_str(),
            "the id is the BLAKE3 of the bytes"
        );

        let got = rose.ssh(&b, "bob", &["get", id]);
        assert_exit(&got, 0);
        assert!(
            got.stdout == expected,
            "{name}: {} bytes back, {} expected",
            got.stdout.len(),
            expected.len()
        );
        // A unique 8-digit prefix works too.
        let prefix = rose.ssh(&b, "bob", &["get", &id[..8]]);
        assert_exit(&prefix, 0);
        assert!(prefix.stdout == expected, "{name} by prefix");
    }
}

#[test]
fn get_in_the_shell_saves_into_downloads() {
    let rose = Instance::start("127.0.0.10");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let local = tempfile::tempdir().unwrap();
    let path = local.path().join("x");
    let bytes = content(3 << 20, 7);
    std::fs::write(&path, &bytes).unwrap();
    upload(&rose, &a, "alice", &[(&path, "Jazz/so what.flac")]);
    assert_exit(&rose.ssh(&a, "alice", &["share", "'so what.flac'"]), 0);

    let mut bob = rose.line_session(&b, "bob");
    bob.expect("Welcome to RoseWire");
    bob.send("/search so what");
    bob.expect("so what.flac");
    bob.send("/get 1");
    bob.expect("saved so what.flac");
    // bob is the second user: his tree is users/2.
    let saved = rose.data_dir().join("users/2/downloads/so what.flac");
    assert!(
        std::fs::read(&saved).unwrap() == bytes,
        "downloaded bytes differ"
    );
    // A second copy gets a new name instead of replacing the first.
    bob.send("/get 1");
    bob.expect("downloads/so what (1).flac");
}

#[test]
fn library_lists_files_with_their_ids_and_shared_flags() {
    let rose = Instance::start("127.0.0.10");
    let a = Key::new("a");
    let local = tempfile::tempdir().unwrap();
    let (p1, p2) = (local.path().join("1"), local.path().join("2"));
    std::fs::write(&p1, b"first").unwrap();
    std::fs::write(&p2, b"second!").unwrap();
    upload(&rose, &a, "alice", &[(&p1, "a.txt"), (&p2, "b.txt")]);
    assert_exit(&rose.ssh(&a, "alice", &["share", "a.txt"]), 0);
    let files = json_lines(&stdout(&rose.ssh(&a, "alice", &["library", "--json"])));
    assert_eq!(files.len(), 2);
    let a_txt = files.iter().find(|f| f["name"] == "a.txt").unwrap();
    assert_eq!(a_txt["id"], blake3::hash(b"first").to_hex().as_str());
    assert_eq!(a_txt["size"], 5);
    assert_eq!(a_txt["shared"], true);
    assert_eq!(
        files.iter().find(|f| f["name"] == "b.txt").unwrap()["shared"],
        false
    );
}

#[test]
fn bad_input_gets_a_specific_message_and_changes_nothing() {
    let rose = Instance::start("127.0.0.10");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let local = tempfile::tempdir().unwrap();
    let p = local.path().join("1");
    std::fs::write(&p, b"private bytes").unwrap();
    upload(&rose, &a, "alice", &[(&p, "private.txt")]);
    let id = blake3::hash(b"private bytes").to_hex().to_string();

    // An unshared file cannot be fetched, by id or prefix.
    let got = rose.ssh(&b, "bob", &["get", &id]);
    assert_exit(&got, 1);
    assert!(
        stderr(&got).contains(&id) && got.stdout.is_empty(),
        "{}",
        stderr(&got)
    );
    // Unsharing what is not shared, sharing what does not exist.
    let unshare = rose.ssh(&a, "alice", &["unshare", "private.txt"]);
    assert_exit(&unshare, 1);
    assert!(
        stderr(&unshare).contains("not shared"),
        "{}",
        stderr(&unshare)
    );
    let share = rose.ssh(&a, "alice", &["share", "nope.txt"]);
    assert_exit(&share, 1);
    assert!(stderr(&share).contains("nope.txt"), "{}", stderr(&share));
    // A malformed query points at its token; a malformed id is a usage error.
    let query = rose.ssh(&b, "bob", &["search", "flac", "size:>lots"]);
    assert_exit(&query, 2);
    assert!(stderr(&query).contains("size:>lots"), "{}", stderr(&query));
    assert_exit(&rose.ssh(&b, "bob", &["get", "xyz"]), 2);
    // `get N` needs a search in the same session.
    assert_exit(&rose.ssh(&b, "bob", &["get", "1"]), 1);
    // Nothing changed: still one private file.
    let files = json_lines(&stdout(&rose.ssh(&a, "alice", &["library", "--json"])));
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["shared"], false);
}

#[test]
fn a_closed_pipe_on_get_is_not_an_error() {
    let rose = Instance::start("127.0.0.10");
    let a = Key::new("a");
    let local = tempfile::tempdir().unwrap();
    let p = local.path().join("big");
    std::fs::write(&p, content(8 << 20, 3)).unwrap();
    upload(&rose, &a, "alice", &[(&p, "big.bin")]);
    assert_exit(&rose.ssh(&a, "alice", &["share", "big.bin"]), 0);
    let id = blake3::hash(&content(8 << 20, 3)).to_hex().to_string();
    let line = format!(
        "ssh {} -i {} alice@{} get {id} | head -c 10 | wc -c",
        ssh_options(rose.ssh_port).join(" "),
        a.path.display(),
        rose.ip
    );
    let out = Command::new("sh").args(["-c", &line]).output().unwrap();
    assert_eq!(stdout(&out).trim(), "10");
    assert!(!stderr(&out).contains("panic"), "{}", stderr(&out));
    // The server is fine and serves the next request.
    assert_exit(&rose.ssh(&a, "alice", &["library"]), 0);
    assert!(!rose.log().contains("panicked"), "{}", rose.log());
}

#[test]
fn search_pages_hold_a_hundred_results() {
    let rose = Instance::start("127.0.0.10");
    let a = Key::new("a");
    let local = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..150 {
        let p = local.path().join(format!("f{i}"));
        std::fs::write(&p, format!("track {i}")).unwrap();
        files.push((p, format!("track{i:03}.ogg")));
    }
    let refs: Vec<(&Path, &str)> = files
        .iter()
        .map(|(p, n)| (p.as_path(), n.as_str()))
        .collect();
    upload(&rose, &a, "alice", &refs);
    assert_exit(&rose.ssh(&a, "alice", &["share", "'*.ogg'"]), 0);
    let first = json_lines(&stdout(&rose.ssh(
        &a,
        "alice",
        &["search", "ext:ogg", "--json"],
    )));
    let second = json_lines(&stdout(&rose.ssh(
        &a,
        "alice",
        &["search", "ext:ogg", "--json", "--page", "2"],
    )));
    assert_eq!((first.len(), second.len()), (100, 50));
    let mut ids: Vec<&str> = first
        .iter()
        .chain(&second)
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 150, "pages do not overlap");
    let plain = stdout(&rose.ssh(&a, "alice", &["search", "ext:ogg"]));
    assert!(
        plain.contains("100. ") && plain.contains("more results: --page 2"),
        "{plain}"
    );
}

#[test]
fn browse_lists_one_users_shared_files_only() {
    let rose = Instance::start("127.0.0.10");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let local = tempfile::tempdir().unwrap();
    let (p1, p2) = (local.path().join("1"), local.path().join("2"));
    std::fs::write(&p1, b"shared bytes").unwrap();
    std::fs::write(&p2, b"private bytes").unwrap();
    upload(
        &rose,
        &a,
        "alice",
        &[(&p1, "open.txt"), (&p2, "closed.txt")],
    );
    assert_exit(&rose.ssh(&a, "alice", &["share", "open.txt"]), 0);

    let listed = rose.ssh(
        &b,
        "bob",
        &["browse", &format!("@alice@{}", rose.domain), "--json"],
    );
    assert_exit(&listed, 0);
    let files = json_lines(&stdout(&listed));
    assert_eq!(files.len(), 1, "{}", stdout(&listed));
    assert_eq!(files[0]["name"], "open.txt");
    assert_eq!(
        files[0]["id"],
        blake3::hash(b"shared bytes").to_hex().as_str()
    );
    assert_eq!(files[0]["owner"], format!("@alice@{}", rose.domain));

    let nobody = rose.ssh(&b, "bob", &["browse", "@nobody"]);
    assert_exit(&nobody, 1);
    assert!(stderr(&nobody).contains("nobody"), "{}", stderr(&nobody));
    // A user elsewhere whose files never reached this instance.
    let remote = rose.ssh(&b, "bob", &["browse", "@alice@elsewhere.example"]);
    assert_exit(&remote, 1);
    assert!(
        stderr(&remote)
            .contains("no shared file of @alice@elsewhere.example has reached this instance"),
        "{}",
        stderr(&remote)
    );
}
