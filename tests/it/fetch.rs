//! Every download proves, before its first byte, that the file is shared now and is the
//! file that was catalogued (issue 6, findings 6 and 7).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::library::{content, upload};
use crate::util::*;

/// Runs an `sftp -b` batch as `user`; asserts success.
fn sftp_batch(rose: &Instance, key: &Key, user: &str, batch: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::sftp::sftp_batch(rose, key, user, dir.path(), batch);
    assert_exit(&out, 0);
}

/// Writes `bytes` to `path` with an old modification time, so `put -p` carries a time that
/// no later edit can share.
fn write_old(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30))
        .unwrap();
}

/// How many entries `dir` holds (0 if it does not exist).
fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn get_refuses_a_file_changed_on_disk_before_sending_a_byte() {
    let rose = Instance::start("127.0.0.10");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let local = tempfile::tempdir().unwrap();
    let shared = content(300_000, 1);
    let private = content(300_000, 2);
    let src = local.path().join("shared");
    write_old(&src, &shared);
    sftp_batch(
        &rose,
        &a,
        "alice",
        &format!("put -p \"{}\" library/tape.bin\n", src.display()),
    );
    assert_exit(&rose.ssh(&a, "alice", &["share", "tape.bin"]), 0);
    let id = blake3::hash(&shared).to_hex().to_string();
    let before = rose.ssh(&b, "bob", &["get", &id]);
    assert_exit(&before, 0);
    assert!(before.stdout == shared, "the shared bytes before the edit");

    // The operator rewrites the file in place: same inode, same size, other bytes.
    let on_disk = rose.data_dir().join("users/1/library/tape.bin");
    std::fs::write(&on_disk, &private).unwrap();

    let after = rose.ssh(&b, "bob", &["get", &id]);
    assert_exit(&after, 1);
    assert!(
        after.stdout.is_empty(),
        "{} bytes sent of a file that is not the shared one",
        after.stdout.len()
    );
    assert!(
        stderr(&after).contains("changed since it was shared"),
        "{}",
        stderr(&after)
    );

    // The shell's /get refuses it the same way and saves nothing.
    let mut bob = rose.line_session(&b, "bob");
    bob.expect("Welcome to RoseWire");
    bob.send(&format!("/get {id}"));
    bob.expect("changed since it was shared");
    assert_eq!(files_in(&rose.data_dir().join("users/2/downloads")), 0);
}

#[test]
fn get_never_streams_private_bytes_while_the_owner_replaces_the_file() {
    const CYCLES: usize = 6;
    const GETTERS: usize = 2;
    let rose = Instance::start("127.0.0.10");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let local = tempfile::tempdir().unwrap();
    let shared = content(200_000, 3);
    let private = content(200_000, 4);
    let (shared_src, private_src) = (local.path().join("shared"), local.path().join("private"));
    std::fs::write(&shared_src, &shared).unwrap();
    std::fs::write(&private_src, &private).unwrap();
    upload(&rose, &a, "alice", &[(&shared_src, "tape.bin")]);
    assert_exit(&rose.ssh(&a, "alice", &["share", "tape.bin"]), 0);
    let id = blake3::hash(&shared).to_hex().to_string();

    let done = AtomicBool::new(false);
    let (served, refused) = std::thread::scope(|s| {
        let getters: Vec<_> = (0..GETTERS)
            .map(|_| {
                s.spawn(|| {
                    let (mut served, mut refused) = (0, 0);
                    while !done.load(Ordering::SeqCst) {
                        let got = rose.ssh(&b, "bob", &["get", &id]);
                        if got.status.success() {
                            assert!(
                                got.stdout == shared,
                                "a successful get sent {} bytes that are not the shared file",
                                got.stdout.len()
                            );
                            served += 1;
                        } else {
                            assert!(
                                got.stdout.is_empty(),
                                "a failed get sent {} bytes first ({})",
                                got.stdout.len(),
                                stderr(&got)
                            );
                            refused += 1;
                        }
                    }
                    (served, refused)
                })
            })
            .collect();
        // The owner replaces the file with private bytes of the same size (which unshares
        // it), puts the shared bytes back (a new inode with the catalogued hash) and shares
        // it again, over and over.
        for _ in 0..CYCLES {
            sftp_batch(
                &rose,
                &a,
                "alice",
                &format!(
                    "put \"{}\" library/tape.bin\nput \"{}\" library/tape.bin\n",
                    private_src.display(),
                    shared_src.display()
                ),
            );
            assert_exit(&rose.ssh(&a, "alice", &["share", "tape.bin"]), 0);
        }
        done.store(true, Ordering::SeqCst);
        getters
            .into_iter()
            .map(|g| g.join().unwrap())
            .fold((0, 0), |(s, r), (s2, r2)| (s + s2, r + r2))
    });
    assert!(served + refused > 0);
    // Shared again at the end: served, and byte for byte.
    let last = rose.ssh(&b, "bob", &["get", &id]);
    assert_exit(&last, 0);
    assert!(last.stdout == shared);
    eprintln!("{served} gets served, {refused} refused");
}

#[test]
fn unsharing_revokes_old_search_results() {
    let rose = Instance::start("127.0.0.10");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("x");
    std::fs::write(&src, content(10_000, 5)).unwrap();
    upload(&rose, &a, "alice", &[(&src, "diary.txt")]);
    assert_exit(&rose.ssh(&a, "alice", &["share", "diary.txt"]), 0);

    let mut bob = rose.line_session(&b, "bob");
    bob.expect("Welcome to RoseWire");
    bob.send("/search diary");
    bob.expect("diary.txt");
    assert_exit(&rose.ssh(&a, "alice", &["unshare", "diary.txt"]), 0);
    bob.send("/get 1");
    bob.expect("is no longer shared");
    assert_eq!(
        files_in(&rose.data_dir().join("users/2/downloads")),
        0,
        "nothing is saved"
    );
    assert!(
        !bob.output().contains("saved diary.txt"),
        "{}",
        bob.output()
    );
}
