//! Per-user limits under hostile use: folder listings, open handles, entries, writable opens,
//! the quota under concurrent uploads and `/get`s, and uploads left behind by a crash.

use crate::sftp::*;
use crate::util::*;

const SSH_FXP_READDIR: u8 = 12;
const SSH_FXP_MKDIR: u8 = 14;
const SSH_FXP_RMDIR: u8 = 15;
const SSH_FXP_NAME: u8 = 104;
const SSH_FX_EOF: u32 = 1;
const MIB: u64 = 1 << 20;

/// Starts an instance with `library` as its `[library]` config section.
fn start_with_library(ip: &str, library: &str) -> (Instance, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rosewire.toml");
    std::fs::write(&config, format!("[library]\n{library}\n")).unwrap();
    let rose = Instance::start_with(ip, &["--config", config.to_str().unwrap()]);
    (rose, dir)
}

/// Entries in the next READDIR batch, or `None` at the end of the folder.
fn readdir(raw: &mut RawSftp, handle: &[u8]) -> Option<u32> {
    let (kind, body) = raw.request(SSH_FXP_READDIR, &bytes(handle));
    if kind == SSH_FXP_NAME {
        return Some(take_u32(&mut body.as_slice()));
    }
    let status = RawSftp::status_of(kind, &body).unwrap_err();
    assert_eq!(status.code, SSH_FX_EOF, "{status:?}");
    None
}

fn mkdir(raw: &mut RawSftp, path: &str) -> Result<(), Status> {
    let mut payload = string(path);
    payload.extend_from_slice(&0u32.to_be_bytes());
    let (kind, body) = raw.request(SSH_FXP_MKDIR, &payload);
    RawSftp::status_of(kind, &body)
}

fn rmdir(raw: &mut RawSftp, path: &str) -> Result<(), Status> {
    let (kind, body) = raw.request(SSH_FXP_RMDIR, &string(path));
    RawSftp::status_of(kind, &body)
}

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// Bytes (logical lengths) of the files in a user's `.partial/`.
fn partial_bytes(rose: &Instance) -> u64 {
    partial_files(rose)
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}

fn assert_refused(result: Result<(), Status>, needle: &str) {
    match result {
        Err(status) => assert!(status.message.contains(needle), "{status:?}"),
        Ok(()) => panic!("accepted, {needle:?} expected"),
    }
}

#[test]
fn folders_opened_many_times_cost_one_batch_each_and_open_folders_are_capped() {
    let rose = Instance::start("127.0.0.11");
    let key = Key::new("alice");
    let mut raw = RawSftp::connect(&rose, &key, "alice");
    // 20,000 folders with long names (made directly: the entry limit guards SFTP's mkdir).
    const FOLDERS: u32 = 20_000;
    let big = user_dir(&rose).join("library/big");
    std::fs::create_dir(&big).unwrap();
    let long = "x".repeat(200);
    for i in 0..FOLDERS {
        std::fs::create_dir(big.join(format!("{long}{i:05}"))).unwrap();
    }
    let before = rss(rose.pid());
    // Each open used to build the whole listing (about 12 MiB here); now it holds a stream.
    let mut handles = Vec::new();
    let mut first = 0;
    for _ in 0..16 {
        let handle = raw.opendir("/library/big").unwrap();
        first = readdir(&mut raw, &handle).unwrap();
        assert!(first > 0 && first <= 128, "{first} entries in a batch");
        handles.push(handle);
    }
    let grown = rss(rose.pid()).saturating_sub(before);
    assert!(
        grown < 24 * MIB,
        "server RSS grew by {} MiB for 16 open folders",
        grown / MIB
    );
    let refused = raw.opendir("/library/big").unwrap_err();
    assert!(
        refused
            .message
            .contains("too many open folders: at most 16"),
        "{refused:?}"
    );
    // The last one read to the end, a batch at a time: every folder is there.
    let handle = handles.pop().unwrap();
    let mut total = first;
    while let Some(n) = readdir(&mut raw, &handle) {
        total += n;
    }
    assert_eq!(total, FOLDERS);
    raw.close(&handle).unwrap();
    raw.opendir("/library/big").unwrap();
}

#[test]
fn files_and_folders_past_max_entries_are_refused() {
    let (rose, _config) = start_with_library("127.0.0.11", "max_entries = 4");
    let key = Key::new("alice");
    let mut raw = RawSftp::connect(&rose, &key, "alice");
    mkdir(&mut raw, "/library/a").unwrap();
    mkdir(&mut raw, "/library/b").unwrap();
    raw.upload("/library/c.bin", b"c").unwrap();
    raw.upload("/library/b/d.bin", b"d").unwrap();

    let limit = "too many files and folders: at most 4";
    assert_refused(mkdir(&mut raw, "/library/e"), limit);
    assert_refused(raw.upload("/library/e.bin", b"e"), limit);
    assert!(!user_dir(&rose).join("library/e.bin").exists());
    // Replacing a file adds no entry.
    raw.upload("/library/c.bin", b"c2").unwrap();
    // Removing one makes room again.
    rmdir(&mut raw, "/library/a").unwrap();
    mkdir(&mut raw, "/library/e").unwrap();
    assert_refused(mkdir(&mut raw, "/library/f"), limit);
}

#[test]
fn writable_opens_copy_nothing_until_written_and_are_capped_per_user() {
    let (rose, _config) = start_with_library(
        "127.0.0.11",
        "quota_bytes = 52428800\nmax_file_bytes = 52428800",
    );
    let key = Key::new("alice");
    // A sparse 20 MiB file: one byte at its end.
    let mut raw = RawSftp::connect(&rose, &key, "alice");
    let handle = raw
        .open("/library/sparse.bin", WRITE | CREATE | TRUNCATE)
        .unwrap();
    raw.write(&handle, 20 * MIB - 1, b"!").unwrap();
    raw.close(&handle).unwrap();

    // Eight writable opens across two sessions copy nothing; a ninth is refused.
    let mut other = RawSftp::connect(&rose, &key, "alice");
    let mut handles = Vec::new();
    for i in 0..8 {
        let session = if i % 2 == 0 { &mut raw } else { &mut other };
        handles.push(session.open("/library/sparse.bin", READ | WRITE).unwrap());
    }
    let refused = other.open("/library/sparse.bin", READ | WRITE).unwrap_err();
    assert!(
        refused
            .message
            .contains("too many uploads in progress: at most 8"),
        "{refused:?}"
    );
    assert_eq!(partial_bytes(&rose), 0, "{:?}", partial_files(&rose));

    // Writing copies the file, and each copy counts against the quota: 20 MiB stored, the
    // first copy replaces it (credited), the second fits, the rest are refused.
    let mut written = 0;
    for (i, handle) in handles.iter().enumerate() {
        let session = if i % 2 == 0 { &mut raw } else { &mut other };
        match session.write(handle, 0, b"?") {
            Ok(()) => written += 1,
            Err(e) => assert!(e.message.contains("quota exceeded"), "{e:?}"),
        }
    }
    assert_eq!(written, 2);
    assert!(
        partial_bytes(&rose) <= 40 * MIB,
        "{} bytes in .partial",
        partial_bytes(&rose)
    );
    // A session's handles close when it goes; one closing frees a writable slot.
    drop(other);
    assert!(wait_until(|| raw
        .open("/library/sparse.bin", READ | WRITE)
        .is_ok()));
}

/// Sends CLOSE for `handle` on every session at once, then collects the statuses.
fn close_together(sessions: &mut [RawSftp], handles: &[Vec<u8>]) -> Vec<Result<(), Status>> {
    for (i, (raw, handle)) in sessions.iter_mut().zip(handles).enumerate() {
        let mut body = (1_000_000 + i as u32).to_be_bytes().to_vec();
        body.extend_from_slice(&bytes(handle));
        raw.send(SSH_FXP_CLOSE, &body);
    }
    sessions
        .iter_mut()
        .map(|raw| {
            let (kind, body) = raw.receive();
            RawSftp::status_of(kind, &body[4..])
        })
        .collect()
}

#[test]
fn concurrent_uploads_never_store_more_than_the_quota() {
    let (rose, _config) = start_with_library(
        "127.0.0.11",
        "quota_bytes = 10485760\nmax_file_bytes = 10485760",
    );
    let key = Key::new("alice");
    let mut sessions: Vec<RawSftp> = (0..4)
        .map(|_| RawSftp::connect(&rose, &key, "alice"))
        .collect();
    let handles: Vec<Vec<u8>> = sessions
        .iter_mut()
        .enumerate()
        .map(|(i, raw)| {
            raw.open(&format!("/library/u{i}.bin"), WRITE | CREATE | TRUNCATE)
                .unwrap()
        })
        .collect();
    // 4 MiB each, written in turns so that all four are in progress at once.
    let chunk = pattern(32 * 1024, 9);
    let mut failed = [false; 4];
    for k in 0..(4 * MIB / chunk.len() as u64) {
        for (i, raw) in sessions.iter_mut().enumerate() {
            if !failed[i] {
                if let Err(e) = raw.write(&handles[i], k * chunk.len() as u64, &chunk) {
                    assert!(e.message.contains("quota exceeded"), "{e:?}");
                    failed[i] = true;
                }
            }
        }
    }
    let closed = close_together(&mut sessions, &handles);
    let stored: u64 = catalog(&rose).iter().map(|(_, size, _)| size).sum();
    assert!(stored <= 10 * MIB, "{stored} bytes stored: {closed:?}");
    assert_eq!(closed.iter().filter(|c| c.is_ok()).count(), 2, "{closed:?}");
    assert_eq!(stored, 8 * MIB);
    // The refused uploads released what they had reserved: 1.5 MiB more still fits.
    sessions[0]
        .upload("/library/late.bin", &pattern(3 * MIB as usize / 2, 1))
        .unwrap();
    assert!(wait_until(|| partial_files(&rose).is_empty()));
}

#[test]
fn concurrent_gets_never_fill_downloads_past_the_quota() {
    let (rose, _config) = start_with_library(
        "127.0.0.11",
        "quota_bytes = 20971520\nmax_file_bytes = 20971520",
    );
    let (a, b) = (Key::new("a"), Key::new("b"));
    let mut raw = RawSftp::connect(&rose, &a, "alice");
    raw.upload("/library/big.bin", &pattern(6 * MIB as usize, 3))
        .unwrap();
    assert_exit(&rose.ssh(&a, "alice", &["share", "big.bin"]), 0);

    let mut bobs: Vec<LineSession> = (0..6).map(|_| rose.line_session(&b, "bob")).collect();
    for bob in &mut bobs {
        bob.expect("Welcome to RoseWire");
        bob.send("/search big");
        bob.expect("big.bin");
    }
    for bob in &mut bobs {
        bob.send("/get 1");
    }
    let answered = |bob: &LineSession| {
        let out = bob.output();
        out.contains("saved ") || out.contains("does not fit in your quota")
    };
    for bob in &bobs {
        assert!(wait_until(|| answered(bob)), "{}", bob.output());
    }
    // bob is the second user: his tree is users/2.
    let downloads = rose.data_dir().join("users/2/downloads");
    let saved: u64 = std::fs::read_dir(&downloads)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(saved <= 20 * MIB, "{saved} bytes in downloads/");
    assert_eq!(saved, 18 * MIB, "three copies fit");
    let refused = bobs
        .iter()
        .filter(|b| b.output().contains("does not fit in your quota"))
        .count();
    assert_eq!(refused, 3);
}

#[test]
fn uploads_left_by_a_crash_are_swept_at_start() {
    let mut rose = Instance::start("127.0.0.11");
    let key = Key::new("alice");
    drop(RawSftp::connect(&rose, &key, "alice"));
    let partial = user_dir(&rose).join(".partial");
    assert!(wait_until(|| partial.is_dir()));
    std::fs::write(
        partial.join("upload-0123456789abcdef.part"),
        vec![1; 100_000],
    )
    .unwrap();
    std::fs::write(partial.join(".get-abc"), vec![2; 5_000]).unwrap();
    rose.restart();
    assert!(
        std::fs::read_dir(&partial).unwrap().next().is_none(),
        "{:?}",
        partial_files(&rose)
    );
    let log = strip_ansi(&rose.log());
    assert!(
        log.lines().any(|l| l.contains("swept unfinished uploads")
            && l.contains("files=2")
            && l.contains("bytes=105000")),
        "{log}"
    );
}

/// `text` without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn open_files_are_capped_per_user_across_sessions_and_per_instance() {
    let (rose, _config) = start_with_library(
        "127.0.0.8",
        "max_open_files_per_user = 6\nmax_open_files = 10",
    );
    let (alice, bob, carol) = (Key::new("alice"), Key::new("bob"), Key::new("carol"));
    let mut a1 = RawSftp::connect(&rose, &alice, "alice");
    let mut a2 = RawSftp::connect(&rose, &alice, "alice");
    let mut b = RawSftp::connect(&rose, &bob, "bob");
    let mut c = RawSftp::connect(&rose, &carol, "carol");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(a1.opendir("/library").unwrap());
    }
    for _ in 0..3 {
        a2.opendir("/library").unwrap();
    }
    // A second session of the same user does not get a fresh allowance.
    let refused = a2.opendir("/library").unwrap_err();
    assert!(
        refused.message.contains("at most 6 per user"),
        "{refused:?}"
    );
    for _ in 0..4 {
        b.opendir("/library").unwrap();
    }
    // Ten open on the instance: nobody gets another, whatever their own count.
    for raw in [&mut b, &mut c] {
        let refused = raw.opendir("/library").unwrap_err();
        assert!(
            refused.message.contains("too many files open"),
            "{refused:?}"
        );
    }
    // Closing a handle, or a session going away, gives its places back.
    a1.close(&held.pop().unwrap()).unwrap();
    c.opendir("/library").unwrap();
    a2.kill();
    assert!(
        wait_until(|| b.opendir("/library").is_ok()),
        "a closed session's handles were not given back"
    );
}
