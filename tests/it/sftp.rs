//! The SFTP subsystem, driven by OpenSSH's `sftp` and `scp`, and by a minimal raw SFTP client
//! over `ssh -s HOST sftp` where a test needs the server's exact status code and message
//! (OpenSSH's `sftp` prints only a generic text for a failed write).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};

use crate::util::*;

/// The first user made on a fresh instance.
const FIRST_USER_ID: i64 = 1;

/// OpenSSH options for `sftp` and `scp`: as [`ssh_options`], but `-P` for the port and the
/// client address as `BindAddress` (`-b` is sftp's batch file).
fn copy_options(port: u16) -> Vec<String> {
    let ssh = ssh_options(port);
    let mut out = Vec::new();
    let mut args = ssh.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-p" => out.extend(["-P".to_owned(), args.next().expect("port after -p")]),
            "-b" => out.extend([
                "-o".to_owned(),
                format!("BindAddress={}", args.next().expect("address after -b")),
            ]),
            _ => out.push(arg),
        }
    }
    out
}

/// Runs `sftp -b BATCH` as `user`; the batch's lines run from `cwd` (local paths).
pub(crate) fn sftp_batch(
    rose: &Instance,
    key: &Key,
    user: &str,
    cwd: &Path,
    batch: &str,
) -> Output {
    let file = cwd.join("batch");
    std::fs::write(&file, batch).unwrap();
    Command::new("sftp")
        .args(copy_options(rose.ssh_port))
        .arg("-i")
        .arg(&key.path)
        .arg("-b")
        .arg(&file)
        .arg(format!("{user}@{}", rose.ip))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run sftp")
}

fn scp(rose: &Instance, key: &Key, from: &str, to: &str) -> Output {
    Command::new("scp")
        .args(copy_options(rose.ssh_port))
        .arg("-i")
        .arg(&key.path)
        .args([from, to])
        .stdin(Stdio::null())
        .output()
        .expect("run scp")
}

pub(crate) fn user_dir(rose: &Instance) -> PathBuf {
    rose.data_dir()
        .join("users")
        .join(FIRST_USER_ID.to_string())
}

/// Bytes that differ at every offset, so a shifted or truncated copy never compares equal.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8 ^ seed)
        .collect()
}

#[track_caller]
fn assert_same_bytes(a: &[u8], b: &[u8]) {
    assert!(
        a == b,
        "contents differ: {} vs {} bytes, first difference at {:?}",
        a.len(),
        b.len(),
        a.iter().zip(b).position(|(x, y)| x != y)
    );
}

/// The user's catalogue: (path, size, hash), read from the instance's database.
pub(crate) fn catalog(rose: &Instance) -> Vec<(String, u64, String)> {
    let db = rusqlite::Connection::open_with_flags(
        rose.data_dir().join("rosewire.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the database");
    let mut stmt = db
        .prepare("SELECT path, size, hash FROM files WHERE owner_id = ?1 ORDER BY path")
        .unwrap();
    let rows = stmt
        .query_map([FIRST_USER_ID], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
        })
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

pub(crate) fn partial_files(rose: &Instance) -> Vec<PathBuf> {
    std::fs::read_dir(user_dir(rose).join(".partial"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn sftp_batch_puts_gets_lists_makes_folders_renames_and_removes() {
    let rose = Instance::start("127.0.0.7");
    let key = Key::new("alice");
    let local = tempfile::tempdir().unwrap();
    let song = pattern(3 << 20, 1);
    std::fs::write(local.path().join("song.flac"), &song).unwrap();
    std::fs::write(local.path().join("tmp.txt"), b"scratch").unwrap();

    let out = sftp_batch(
        &rose,
        &key,
        "alice",
        local.path(),
        "pwd\ncd library\nmkdir Music\nput song.flac Music/song.flac\nput tmp.txt\nls -1 Music\n\
         rename Music/song.flac Music/so_what.flac\nget Music/so_what.flac back.flac\nrm tmp.txt\n\
         ls -l\nls -l Music\n",
    );
    assert_exit(&out, 0);
    let listing = stdout(&out);
    assert!(
        listing.contains("Remote working directory: /\n"),
        "{listing}"
    );
    assert!(
        listing.contains("\nMusic/song.flac\n"),
        "ls -1 after put:\n{listing}"
    );
    let long = listing
        .lines()
        .find(|l| l.ends_with(" so_what.flac"))
        .unwrap_or_default();
    assert!(
        long.starts_with("-rw") && long.contains(&format!(" {} ", song.len())),
        "ls -l line: {long:?}\n{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('d') && l.ends_with(" Music")),
        "{listing}"
    );
    let after_rm = listing.split("sftp> rm tmp.txt").nth(1).unwrap_or_default();
    assert!(
        !after_rm.contains("tmp.txt"),
        "tmp.txt listed after rm:\n{listing}"
    );

    assert_same_bytes(
        &std::fs::read(local.path().join("back.flac")).unwrap(),
        &song,
    );
    let library = user_dir(&rose).join("library");
    assert_same_bytes(
        &std::fs::read(library.join("Music/so_what.flac")).unwrap(),
        &song,
    );
    assert!(!library.join("tmp.txt").exists());
    assert!(!library.join("Music/song.flac").exists());
    assert_eq!(
        catalog(&rose),
        [(
            "Music/so_what.flac".to_owned(),
            song.len() as u64,
            blake3::hash(&song).to_hex().to_string()
        )]
    );
    assert!(partial_files(&rose).is_empty());
    assert!(rose.log().contains("upload complete"), "{}", rose.log());
}

#[test]
fn the_virtual_root_lists_library_and_downloads_only() {
    let rose = Instance::start("127.0.0.7");
    let key = Key::new("alice");
    let local = tempfile::tempdir().unwrap();
    let out = sftp_batch(
        &rose,
        &key,
        "alice",
        local.path(),
        "ls -1a /\ncd library\npwd\ncd ..\npwd\n",
    );
    assert_exit(&out, 0);
    let listing = stdout(&out);
    let names: Vec<&str> = listing
        .lines()
        .filter(|l| !l.starts_with("sftp>") && !l.starts_with("Remote"))
        .collect();
    assert_eq!(names, ["/downloads", "/library"], "{listing}");
    assert!(stdout(&out).contains("Remote working directory: /library\n"));
    assert!(
        stdout(&out).ends_with("Remote working directory: /\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn scp_uploads_and_downloads_byte_identical_files() {
    let rose = Instance::start("127.0.0.7");
    let key = Key::new("alice");
    let local = tempfile::tempdir().unwrap();
    let data = pattern(5 << 20, 2);
    let src = local.path().join("photo.raw");
    std::fs::write(&src, &data).unwrap();

    let up = scp(
        &rose,
        &key,
        src.to_str().unwrap(),
        &format!("alice@{}:library/", rose.ip),
    );
    let stored = user_dir(&rose).join("library/photo.raw");
    assert!(
        wait_until(|| std::fs::read(&stored).is_ok_and(|b| b == data)),
        "upload not in place; scp stderr:\n{}",
        stderr(&up)
    );
    let back = local.path().join("back.raw");
    let down = scp(
        &rose,
        &key,
        &format!("alice@{}:library/photo.raw", rose.ip),
        back.to_str().unwrap(),
    );
    assert_same_bytes(
        &std::fs::read(&back).unwrap_or_else(|e| panic!("{e}; scp stderr:\n{}", stderr(&down))),
        &data,
    );
    assert_eq!(catalog(&rose).len(), 1);
}

/// OpenSSH's scp exits 1 unless the server sends exit-status 0 when the sftp subsystem ends,
/// as sshd does; that is the SSH session's job (src/ssh/session.rs).
#[test]
fn scp_exits_zero_after_a_transfer() {
    let rose = Instance::start("127.0.0.7");
    let key = Key::new("alice");
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("a.txt");
    std::fs::write(&src, b"hello").unwrap();
    assert_exit(
        &scp(
            &rose,
            &key,
            src.to_str().unwrap(),
            &format!("alice@{}:library/", rose.ip),
        ),
        0,
    );
    let back = local.path().join("b.txt");
    assert_exit(
        &scp(
            &rose,
            &key,
            &format!("alice@{}:library/a.txt", rose.ip),
            back.to_str().unwrap(),
        ),
        0,
    );
}

#[test]
fn path_escapes_and_symlinks_stay_inside_the_users_tree() {
    let rose = Instance::start("127.0.0.7");
    let key = Key::new("alice");
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("x"), b"escape attempt").unwrap();
    // Claim the nickname (user 1) and create the folders.
    assert_exit(
        &sftp_batch(&rose, &key, "alice", local.path(), "ls /library\n"),
        0,
    );

    // A secret outside the tree, and an operator-made symlink to it inside the library.
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("secret.txt");
    std::fs::write(&secret, b"TOP-SECRET-CONTENT").unwrap();
    let library = user_dir(&rose).join("library");
    std::os::unix::fs::symlink(&secret, library.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(secret_dir.path(), library.join("leakdir")).unwrap();

    let tmp_probe = format!("rosewire-escape-probe-{}", std::process::id());
    let far_above = format!("cd library\nput x ../../../../../../tmp/{tmp_probe}\n");
    for (batch, what) in [
        ("cd library\nput x ../../x\n", "put above the root"),
        ("cd library\nput x /etc/x\n", "put to an absolute real path"),
        (far_above.as_str(), "put far above the root"),
        ("get ../../../etc/passwd passwd\n", "get above the root"),
        ("get /library/leak.txt leak\n", "get through a symlink"),
        (
            "get /library/leakdir/secret.txt leak2\n",
            "get through a symlinked folder",
        ),
        (
            "put x /library/leakdir/x\n",
            "put through a symlinked folder",
        ),
        ("ls /library/leakdir\n", "list a symlinked folder"),
        ("symlink /etc/passwd /library/pw\n", "make a symlink"),
    ] {
        let out = sftp_batch(&rose, &key, "alice", local.path(), batch);
        assert_ne!(
            out.status.code(),
            Some(0),
            "{what} succeeded:\n{}",
            stdout(&out)
        );
        assert!(
            !stdout(&out).contains("TOP-SECRET"),
            "{what} leaked:\n{}",
            stdout(&out)
        );
    }
    for leaked in ["passwd", "leak", "leak2"] {
        assert!(
            !local.path().join(leaked).exists(),
            "{leaked} was downloaded"
        );
    }
    assert!(
        !secret_dir.path().join("x").exists(),
        "written through a symlink"
    );
    assert!(!Path::new("/etc/x").exists() && !Path::new("/tmp").join(&tmp_probe).exists());
    assert!(!rose.data_dir().join("x").exists() && !rose.data_dir().join("users/x").exists());
    assert!(!library.join("pw").exists());
    assert_eq!(std::fs::read(&secret).unwrap(), b"TOP-SECRET-CONTENT");

    // The raw protocol: exact statuses for the same tricks, and for odd bytes in names.
    let mut raw = RawSftp::connect(&rose, &key, "alice");
    assert_eq!(raw.realpath("/library/../../../etc"), Ok("/etc".to_owned()));
    assert_eq!(
        raw.open("/library/../../../etc/passwd", READ)
            .unwrap_err()
            .code,
        NO_SUCH_FILE
    );
    let refused = raw.open("/library/leak.txt", READ).unwrap_err();
    assert_eq!(refused.code, PERMISSION_DENIED, "{refused:?}");
    assert!(refused.message.contains("symbolic link"), "{refused:?}");
    let bad = raw
        .open("/library/a\nb", WRITE | CREATE | TRUNCATE)
        .unwrap_err();
    assert!(bad.message.contains("control characters"), "{bad:?}");
    let nul = raw
        .open("/library/a\0b", WRITE | CREATE | TRUNCATE)
        .unwrap_err();
    assert!(nul.message.contains("control characters"), "{nul:?}");
    let link = raw.status_request(
        SSH_FXP_SYMLINK,
        &[string("/library/l"), string("/etc/passwd")].concat(),
    );
    assert_eq!(link.unwrap_err().code, PERMISSION_DENIED);
    assert!(std::fs::read_dir(&library).unwrap().all(|e| {
        let name = e.unwrap().file_name();
        name == "leak.txt" || name == "leakdir"
    }));
}

#[test]
fn downloads_can_be_read_renamed_and_deleted_but_not_written() {
    let rose = Instance::start("127.0.0.7");
    let key = Key::new("alice");
    let local = tempfile::tempdir().unwrap();
    assert_exit(
        &sftp_batch(&rose, &key, "alice", local.path(), "ls /downloads\n"),
        0,
    );
    let fetched = pattern(100_000, 3);
    std::fs::write(user_dir(&rose).join("downloads/fetched.bin"), &fetched).unwrap();
    std::fs::write(local.path().join("up.bin"), b"upload").unwrap();

    let out = sftp_batch(
        &rose,
        &key,
        "alice",
        local.path(),
        "cd /downloads\nget fetched.bin got.bin\n-put up.bin\n-mkdir sub\n-rename fetched.bin /library/moved.bin\n\
         -put up.bin /up.bin\n-mkdir /newdir\nrename fetched.bin renamed.bin\nls -1\nrm renamed.bin\nls -1\n",
    );
    assert_exit(&out, 0);
    assert_same_bytes(
        &std::fs::read(local.path().join("got.bin")).unwrap(),
        &fetched,
    );
    let err = stderr(&out);
    assert!(err.contains("Permission denied"), "{err}");
    let downloads = user_dir(&rose).join("downloads");
    assert!(
        std::fs::read_dir(&downloads).unwrap().next().is_none(),
        "downloads/ not empty after rm"
    );
    assert!(!user_dir(&rose).join("library/moved.bin").exists());
    assert!(!rose.data_dir().join("users/1/newdir").exists());
    assert!(stdout(&out).contains("\nrenamed.bin\n"), "{}", stdout(&out));
    let root = sftp_batch(&rose, &key, "alice", local.path(), "put up.bin /x.bin\n");
    assert!(
        stderr(&root).contains("Permission denied"),
        "{}",
        stderr(&root)
    );

    let mut raw = RawSftp::connect(&rose, &key, "alice");
    let denied = raw
        .open("/downloads/new.bin", WRITE | CREATE | TRUNCATE)
        .unwrap_err();
    assert_eq!(denied.code, PERMISSION_DENIED);
    assert!(
        denied.message.contains("/downloads is read-only"),
        "{denied:?}"
    );
    let root = raw.open("/new.bin", WRITE | CREATE | TRUNCATE).unwrap_err();
    assert_eq!(root.code, PERMISSION_DENIED, "{root:?}");
}

#[test]
fn an_upload_cut_off_midway_leaves_no_library_entry() {
    let rose = Instance::start("127.0.0.7");
    let key = Key::new("alice");
    let mut raw = RawSftp::connect(&rose, &key, "alice");
    let handle = raw
        .open("/library/big.bin", WRITE | CREATE | TRUNCATE)
        .unwrap();
    let chunk = pattern(32 * 1024, 4);
    for i in 0..160 {
        raw.write(&handle, i * chunk.len() as u64, &chunk).unwrap();
    }
    assert!(
        wait_until(|| partial_files(&rose)
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() >= 5 << 20))),
        "no growing .partial file: {:?}",
        partial_files(&rose)
    );
    raw.kill();

    assert!(
        wait_until(|| partial_files(&rose).is_empty()),
        ".partial not emptied after the client vanished: {:?}",
        partial_files(&rose)
    );
    assert!(!user_dir(&rose).join("library/big.bin").exists());
    assert!(catalog(&rose).is_empty(), "{:?}", catalog(&rose));
    let local = tempfile::tempdir().unwrap();
    let out = sftp_batch(&rose, &key, "alice", local.path(), "ls -1 /library\n");
    assert_exit(&out, 0);
    assert!(!stdout(&out).contains("big.bin"), "{}", stdout(&out));
}

#[test]
fn quota_and_maximum_file_size_are_enforced_with_clear_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rosewire.toml");
    std::fs::write(
        &config,
        "[library]\nquota_bytes = 1000000\nmax_file_bytes = 500000\n",
    )
    .unwrap();
    let rose = Instance::start_with("127.0.0.8", &["--config", config.to_str().unwrap()]);
    let key = Key::new("alice");
    let local = tempfile::tempdir().unwrap();
    for (name, len) in [
        ("big.bin", 600_000),
        ("a.bin", 400_000),
        ("b.bin", 400_000),
        ("c.bin", 400_000),
    ] {
        std::fs::write(local.path().join(name), pattern(len, 5)).unwrap();
    }

    // Too large: OpenSSH's sftp fails; the raw client sees why.
    let out = sftp_batch(
        &rose,
        &key,
        "alice",
        local.path(),
        "put big.bin /library/big.bin\n",
    );
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    let mut raw = RawSftp::connect(&rose, &key, "alice");
    let refused = raw
        .upload("/library/big.bin", &pattern(600_000, 5))
        .unwrap_err();
    assert_eq!(refused.code, FAILURE);
    assert!(
        refused.message.contains("too large") && refused.message.contains("500000"),
        "{refused:?}"
    );

    // Two files fit, a third exceeds the quota.
    let out = sftp_batch(
        &rose,
        &key,
        "alice",
        local.path(),
        "put a.bin /library/a.bin\nput b.bin /library/b.bin\n",
    );
    assert_exit(&out, 0);
    let out = sftp_batch(
        &rose,
        &key,
        "alice",
        local.path(),
        "put c.bin /library/c.bin\n",
    );
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    let refused = raw
        .upload("/library/c.bin", &pattern(400_000, 5))
        .unwrap_err();
    assert!(
        refused.message.contains("quota exceeded")
            && refused.message.contains("1000000 bytes allowed"),
        "{refused:?}"
    );
    // Replacing a file with one of the same size adds nothing: allowed.
    raw.upload("/library/a.bin", &pattern(400_000, 6)).unwrap();

    let library = user_dir(&rose).join("library");
    assert!(!library.join("big.bin").exists() && !library.join("c.bin").exists());
    let paths: Vec<String> = catalog(&rose).into_iter().map(|(p, _, _)| p).collect();
    assert_eq!(paths, ["a.bin", "b.bin"]);
    assert!(
        wait_until(|| partial_files(&rose).is_empty()),
        "{:?}",
        partial_files(&rose)
    );
}

#[test]
fn open_handles_are_capped_per_session() {
    let rose = Instance::start("127.0.0.7");
    let key = Key::new("alice");
    let mut raw = RawSftp::connect(&rose, &key, "alice");
    std::fs::write(user_dir(&rose).join("library/a.txt"), b"a").unwrap();
    let mut handles = Vec::new();
    for _ in 0..16 {
        handles.push(raw.opendir("/library").unwrap());
    }
    for _ in 16..64 {
        handles.push(raw.open("/library/a.txt", READ).unwrap());
    }
    let refused = raw.open("/library/a.txt", READ).unwrap_err();
    assert!(
        refused.message.contains("too many open files"),
        "{refused:?}"
    );
    raw.close(&handles.pop().unwrap()).unwrap();
    raw.open("/library/a.txt", READ).unwrap();
}

// --- a minimal SFTP v3 client over `ssh -s HOST sftp` -----------------------------------

const SSH_FXP_INIT: u8 = 1;
const SSH_FXP_OPEN: u8 = 3;
pub(crate) const SSH_FXP_CLOSE: u8 = 4;
const SSH_FXP_WRITE: u8 = 6;
const SSH_FXP_OPENDIR: u8 = 11;
const SSH_FXP_REALPATH: u8 = 16;
const SSH_FXP_SYMLINK: u8 = 20;
pub(crate) const SSH_FXP_STATUS: u8 = 101;
const SSH_FXP_HANDLE: u8 = 102;
const SSH_FXP_NAME: u8 = 104;

pub(crate) const READ: u32 = 0x01;
pub(crate) const WRITE: u32 = 0x02;
pub(crate) const CREATE: u32 = 0x08;
pub(crate) const TRUNCATE: u32 = 0x10;

const NO_SUCH_FILE: u32 = 2;
const PERMISSION_DENIED: u32 = 3;
pub(crate) const FAILURE: u32 = 4;

/// An SFTP status other than OK.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) code: u32,
    pub(crate) message: String,
}

pub(crate) fn string(s: &str) -> Vec<u8> {
    bytes(s.as_bytes())
}

pub(crate) fn bytes(b: &[u8]) -> Vec<u8> {
    let mut out = (b.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(b);
    out
}

pub(crate) fn take_u32(b: &mut &[u8]) -> u32 {
    let v = u32::from_be_bytes(b[..4].try_into().unwrap());
    *b = &b[4..];
    v
}

pub(crate) fn take_bytes(b: &mut &[u8]) -> Vec<u8> {
    let len = take_u32(b) as usize;
    let v = b[..len].to_vec();
    *b = &b[len..];
    v
}

pub(crate) struct RawSftp {
    child: Child,
    stdin: ChildStdin,
    /// Whole packets (type, body) read by a thread, so every wait is bounded.
    packets: Receiver<(u8, Vec<u8>)>,
    next_id: u32,
}

impl RawSftp {
    pub(crate) fn connect(rose: &Instance, key: &Key, user: &str) -> RawSftp {
        let mut child = rose
            .ssh_command(key, user, &["-s", "sftp"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh -s sftp");
        let mut stdout = child.stdout.take().unwrap();
        let (tx, packets) = std::sync::mpsc::channel();
        std::thread::spawn(move || loop {
            let mut len = [0u8; 4];
            if stdout.read_exact(&mut len).is_err() {
                return;
            }
            let mut packet = vec![0u8; u32::from_be_bytes(len) as usize];
            if stdout.read_exact(&mut packet).is_err() || packet.is_empty() {
                return;
            }
            if tx.send((packet[0], packet[1..].to_vec())).is_err() {
                return;
            }
        });
        let stdin = child.stdin.take().unwrap();
        let mut raw = RawSftp {
            child,
            stdin,
            packets,
            next_id: 1,
        };
        raw.send(SSH_FXP_INIT, &3u32.to_be_bytes());
        let (kind, _) = raw.receive();
        assert_eq!(kind, 2, "SSH_FXP_VERSION expected");
        raw
    }

    pub(crate) fn send(&mut self, kind: u8, body: &[u8]) {
        let mut packet = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        packet.push(kind);
        packet.extend_from_slice(body);
        self.stdin.write_all(&packet).expect("send to ssh");
    }

    pub(crate) fn receive(&mut self) -> (u8, Vec<u8>) {
        match self.packets.recv_timeout(WAIT) {
            Ok(p) => p,
            Err(RecvTimeoutError::Timeout) => panic!("no SFTP reply within {WAIT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the SFTP connection closed"),
        }
    }

    /// Sends a request and returns the reply's type and body after the id.
    pub(crate) fn request(&mut self, kind: u8, payload: &[u8]) -> (u8, Vec<u8>) {
        let id = self.next_id;
        self.next_id += 1;
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(payload);
        self.send(kind, &body);
        let (reply, body) = self.receive();
        let mut rest = body.as_slice();
        assert_eq!(take_u32(&mut rest), id, "reply to another request");
        (reply, rest.to_vec())
    }

    pub(crate) fn status_of(kind: u8, body: &[u8]) -> Result<(), Status> {
        assert_eq!(kind, SSH_FXP_STATUS, "status expected");
        let mut rest = body;
        let code = take_u32(&mut rest);
        let message = String::from_utf8_lossy(&take_bytes(&mut rest)).into_owned();
        if code == 0 {
            Ok(())
        } else {
            Err(Status { code, message })
        }
    }

    fn status_request(&mut self, kind: u8, payload: &[u8]) -> Result<(), Status> {
        let (reply, body) = self.request(kind, payload);
        Self::status_of(reply, &body)
    }

    fn handle_request(&mut self, kind: u8, payload: &[u8]) -> Result<Vec<u8>, Status> {
        let (reply, body) = self.request(kind, payload);
        if reply == SSH_FXP_HANDLE {
            return Ok(take_bytes(&mut body.as_slice()));
        }
        Self::status_of(reply, &body).map(|()| panic!("OK status instead of a handle"))
    }

    pub(crate) fn open(&mut self, path: &str, flags: u32) -> Result<Vec<u8>, Status> {
        let mut payload = string(path);
        payload.extend_from_slice(&flags.to_be_bytes());
        payload.extend_from_slice(&0u32.to_be_bytes()); // no attributes
        self.handle_request(SSH_FXP_OPEN, &payload)
    }

    pub(crate) fn opendir(&mut self, path: &str) -> Result<Vec<u8>, Status> {
        self.handle_request(SSH_FXP_OPENDIR, &string(path))
    }

    pub(crate) fn write(&mut self, handle: &[u8], offset: u64, data: &[u8]) -> Result<(), Status> {
        let mut payload = bytes(handle);
        payload.extend_from_slice(&offset.to_be_bytes());
        payload.extend_from_slice(&bytes(data));
        self.status_request(SSH_FXP_WRITE, &payload)
    }

    pub(crate) fn close(&mut self, handle: &[u8]) -> Result<(), Status> {
        self.status_request(SSH_FXP_CLOSE, &bytes(handle))
    }

    /// Opens, writes in 32 KiB chunks and closes; the first failure is returned (the handle is
    /// closed all the same).
    pub(crate) fn upload(&mut self, path: &str, data: &[u8]) -> Result<(), Status> {
        let handle = self.open(path, WRITE | CREATE | TRUNCATE)?;
        let mut result = Ok(());
        for (i, chunk) in data.chunks(32 * 1024).enumerate() {
            result = self.write(&handle, (i * 32 * 1024) as u64, chunk);
            if result.is_err() {
                break;
            }
        }
        let closed = self.close(&handle);
        result.and(closed)
    }

    fn realpath(&mut self, path: &str) -> Result<String, Status> {
        let (reply, body) = self.request(SSH_FXP_REALPATH, &string(path));
        if reply != SSH_FXP_NAME {
            return Self::status_of(reply, &body).map(|()| panic!("OK status instead of a name"));
        }
        let mut rest = body.as_slice();
        assert_eq!(take_u32(&mut rest), 1, "one name");
        Ok(String::from_utf8(take_bytes(&mut rest)).unwrap())
    }

    /// Cuts the connection as a crashing client would.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RawSftp {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Unmounts an sshfs mount when the test ends, even on failure.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("fusermount").arg("-u").arg(&self.0).status();
    }
}

/// sshfs over our SFTP: a mounted library behaves like a folder. This machine (and CI's) has
/// FUSE (`/dev/fuse`); the test says so plainly where it has not.
#[test]
fn sshfs_mounts_the_library_like_a_folder() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "this test needs FUSE (/dev/fuse) and sshfs, which .ci/run installs"
    );
    let rose = Instance::start("127.0.0.8");
    let key = Key::new("alice");
    let local = tempfile::tempdir().unwrap();
    let mnt = local.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let options = format!(
        "IdentityFile={},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,IdentitiesOnly=yes,BatchMode=yes,BindAddress={CLIENT_ADDR}",
        key.path.display()
    );
    let status = Command::new("sshfs")
        .args(["-p", &rose.ssh_port.to_string(), "-o", &options])
        .arg(format!("alice@{}:/", rose.ip))
        .arg(&mnt)
        .status()
        .expect("run sshfs");
    assert!(status.success(), "sshfs could not mount");
    let _mount = Mount(mnt.clone());

    let library = mnt.join("library");
    let data = pattern(3 << 20, 5);
    std::fs::write(library.join("big.bin"), &data).unwrap();
    std::fs::write(library.join("hello.txt"), b"hello\n").unwrap();
    std::fs::create_dir(library.join("sub")).unwrap();
    std::fs::rename(library.join("hello.txt"), library.join("sub/hello.txt")).unwrap();
    assert_same_bytes(&std::fs::read(library.join("big.bin")).unwrap(), &data);
    assert_eq!(
        std::fs::read(library.join("sub/hello.txt")).unwrap(),
        b"hello\n"
    );
    let mut top: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["downloads", "library"]);
    // What was written through the mount is in the catalog with the right hashes.
    let expected_big = blake3::hash(&data).to_hex().to_string();
    assert!(wait_until(|| catalog(&rose)
        .iter()
        .any(|(p, s, h)| p == "big.bin"
            && *s == data.len() as u64
            && *h == expected_big)));
    assert!(wait_until(|| catalog(&rose)
        .iter()
        .any(|(p, ..)| p == "sub/hello.txt")));
}
