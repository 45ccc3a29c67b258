//! Bidi controls never reach a terminal through exec or line mode, and new names cannot
//! hold them (issue 6, finding 10). A name with U+202E (right-to-left override) makes
//! `photo<U+202E>gpj.exe` read as `photoexe.jpg`.

use crate::sftp::sftp_batch;
use crate::util::*;

const RLO: char = '\u{202E}';
/// The name as it is stored once slipped into the catalog (and as it reads reversed).
const EVIL: &str = "photo\u{202E}gpj.exe";

fn assert_no_bidi(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(
        !text.contains(RLO)
            && !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\r'),
        "{what} holds a raw control: {text:?}"
    );
}

#[test]
fn sftp_refuses_new_names_with_bidi_controls() {
    let rose = Instance::start("127.0.0.10");
    let key = Key::new("a");
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("clean.txt"), b"bytes").unwrap();
    // alice is the first user: her files live in users/1/library.
    let library = rose.data_dir().join("users/1/library");
    // Log in once so that alice and her folders exist.
    assert_exit(
        &sftp_batch(
            &rose,
            &key,
            "alice",
            local.path(),
            "put clean.txt library/clean.txt\n",
        ),
        0,
    );
    for batch in [
        format!("put clean.txt \"library/{EVIL}\"\n"),
        format!("mkdir \"library/dir{RLO}x\"\n"),
        format!("rename library/clean.txt \"library/{EVIL}\"\n"),
    ] {
        let out = sftp_batch(&rose, &key, "alice", local.path(), &batch);
        assert!(!out.status.success(), "{batch}: {}", stderr(&out));
    }
    let mut names: Vec<String> = std::fs::read_dir(&library)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["clean.txt"]);
}

#[test]
fn exec_and_line_mode_never_print_a_raw_bidi_control() {
    let mut rose = Instance::start("127.0.0.10");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("1"), b"first").unwrap();
    std::fs::write(local.path().join("2"), b"second").unwrap();
    let batch = "put 1 \"library/photo gpj.exe\"\nput 2 \"library/photo two.exe\"\n";
    assert_exit(&sftp_batch(&rose, &a, "alice", local.path(), batch), 0);
    assert_exit(&rose.ssh(&a, "alice", &["share", "photo*"]), 0);
    assert_exit(&rose.ssh(&b, "bob", &["who"]), 0);
    // Names can no longer be made with such characters; slip one into the catalog as an
    // older server or another route could have, and give both files ids with one prefix.
    rose.stop();
    {
        let db = rusqlite::Connection::open(rose.data_dir().join("rosewire.db")).unwrap();
        let changed = db
            .execute(
                "UPDATE files SET name = ?1, path = ?1, hash = 'aaaaaaaa' || substr(hash, 9)
                 WHERE name = 'photo gpj.exe'",
                [EVIL],
            )
            .unwrap();
        assert_eq!(changed, 1);
        db.execute(
            "UPDATE files SET hash = 'aaaaaaaa' || substr(hash, 9) WHERE name = 'photo two.exe'",
            [],
        )
        .unwrap();
    }
    rose.restart_after_stop();
    let owner = format!("@alice@{}", rose.domain);

    for (key, user, args) in [
        (&b, "bob", &["search", "photo"][..]),
        (&b, "bob", &["browse", &owner]),
        (&a, "alice", &["library"]),
        (&b, "bob", &["get", "aaaaaaaa"]),
    ] {
        let out = rose.ssh(key, user, args);
        assert_no_bidi(&format!("{args:?} stdout"), &out.stdout);
        assert_no_bidi(&format!("{args:?} stderr"), &out.stderr);
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(all.contains("photogpj.exe"), "{args:?}: {all}");
    }
    // The ambiguous id lists both files, one per line.
    let out = rose.ssh(&b, "bob", &["get", "aaaaaaaa"]);
    assert_exit(&out, 1);
    assert_eq!(stderr(&out).lines().count(), 3, "{}", stderr(&out));

    // JSON keeps the exact name, escaped, never raw.
    for (key, user, args) in [
        (&b, "bob", &["search", "photo", "--json"][..]),
        (&b, "bob", &["browse", &owner, "--json"]),
        (&a, "alice", &["library", "--json"]),
    ] {
        let out = rose.ssh(key, user, args);
        assert_exit(&out, 0);
        assert_no_bidi(&format!("{args:?}"), &out.stdout);
        assert!(
            stdout(&out).contains("photo\\u202egpj.exe"),
            "{}",
            stdout(&out)
        );
        let names: Vec<String> = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["name"].to_string())
            .collect();
        assert!(
            names.contains(&format!("\"{EVIL}\"")),
            "{args:?}: {names:?}"
        );
    }

    // Plain line mode (`ssh -T`), as scripts and screen readers use it.
    let mut session = rose.line_session(&b, "bob");
    session.send("/search photo");
    session.expect("photo two.exe");
    session.send("/get aaaaaaaa");
    session.expect("ambiguous");
    session.send("/quit");
    session.wait_exit();
    assert_no_bidi("line mode", &session.output_bytes());
    assert!(
        session.output().contains("photogpj.exe"),
        "{}",
        session.output()
    );
}
