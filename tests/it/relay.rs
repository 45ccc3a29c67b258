//! The private relay, end to end: a file shared on B downloaded by a user of A through A
//! (`B -> A -> downloader`), verified chunk group by chunk group; B never sees the downloader.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::library::content;
use crate::util::*;

/// The address B's own users connect from (the downloader uses [`CLIENT_ADDR`]).
const UPLOADER_ADDR: &str = "127.0.0.10";

/// `ssh` to `node` as `user`, from the loopback address `from`.
fn ssh_from(node: &Instance, from: &str, key: &Key, user: &str, args: &[&str]) -> Output {
    let options: Vec<String> = ssh_options(node.ssh_port)
        .into_iter()
        .map(|o| if o == CLIENT_ADDR { from.to_owned() } else { o })
        .collect();
    Command::new("ssh")
        .args(options)
        .arg("-i")
        .arg(&key.path)
        .arg(format!("{user}@{}", node.ip))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

/// Uploads `bytes` as `library/NAME` of `user` on `node` with sftp from [`UPLOADER_ADDR`],
/// and shares it; returns its id.
fn upload_and_share(node: &Instance, key: &Key, user: &str, name: &str, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join(name);
    std::fs::write(&local, bytes).unwrap();
    let batch = dir.path().join("batch");
    std::fs::write(
        &batch,
        format!("put \"{}\" \"library/{name}\"\n", local.display()),
    )
    .unwrap();
    let out = Command::new("sftp")
        .args(["-P", &node.ssh_port.to_string()])
        .args(["-o", &format!("BindAddress={UPLOADER_ADDR}")])
        .args(ssh_options(node.ssh_port).iter().skip(4))
        .arg("-i")
        .arg(&key.path)
        .arg("-b")
        .arg(&batch)
        .arg(format!("{user}@{}", node.ip))
        .stdin(Stdio::null())
        .output()
        .expect("run sftp");
    assert_exit(&out, 0);
    assert_exit(
        &ssh_from(node, UPLOADER_ADDR, key, user, &["share", name]),
        0,
    );
    blake3::hash(bytes).to_hex().to_string()
}

/// Waits until a search on `a` finds the file `id`.
fn wait_found(a: &Instance, key: &Key, user: &str, name: &str, id: &str, b: &Instance) {
    let mut found = String::new();
    assert!(
        wait_until(|| {
            found = stdout(&a.ssh(key, user, &["search", name, "--json"]));
            found.contains(id)
        }),
        "A did not find {name}: {found:?}; B log:\n{}",
        b.log()
    );
}

/// Two federated instances and a file shared on B, found from A.
struct Pair {
    /// The downloader's home, on 127.0.0.2.
    a: Instance,
    /// The owner's home, on 127.0.0.3.
    b: Instance,
    /// alice's key, on A.
    ka: Key,
    /// bea's key, on B.
    kb: Key,
    /// The file `tape.bin` bea shares.
    bytes: Vec<u8>,
    id: String,
}

/// A and B, and a file of `len` bytes shared by bea on B and found by alice on A.
fn two_instances(len: usize, b_extra: &[&str]) -> Pair {
    let b = Instance::start_federated("127.0.0.3", b_extra);
    let a = Instance::start_federated("127.0.0.2", &["--bootstrap", &b.url()]);
    let (ka, kb) = (Key::new("a"), Key::new("b"));
    let bytes = content(len, 7);
    let id = upload_and_share(&b, &kb, "bea", "tape.bin", &bytes);
    wait_found(&a, &ka, "alice", "tape.bin", &id, &b);
    Pair {
        a,
        b,
        ka,
        kb,
        bytes,
        id,
    }
}

/// Every file of `dir` and below, as bytes.
fn all_bytes_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_bytes_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

/// `text` without its colour escapes (`ESC [ ... m`).
fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_file_on_another_instance_is_relayed_byte_identical_and_its_home_never_sees_the_downloader() {
    // Several chunk groups and an odd tail.
    let Pair {
        a,
        b,
        ka,
        bytes,
        id,
        ..
    } = two_instances(3 * 1024 * 1024 + 12_345, &[]);
    let out = a.ssh(&ka, "alice", &["get", &id]);
    assert_exit(&out, 0);
    assert!(
        out.stdout == bytes,
        "{} bytes received of {}; stderr {}",
        out.stdout.len(),
        bytes.len(),
        stderr(&out)
    );
    // A shorter prefix works as well.
    let out = a.ssh(&ka, "alice", &["get", &id[..10]]);
    assert!(out.stdout == bytes);

    // A saw the downloader's address (so the logging would have caught it at B)...
    assert!(a.log().contains(CLIENT_ADDR), "A log:\n{}", a.log());
    // ...B served the file to A...
    let b_log = b.log();
    assert!(b_log.contains("file stream sent"), "B log:\n{b_log}");
    assert!(b_log.contains(&a.domain), "B log:\n{b_log}");
    // ...and nothing at B holds the downloader's address: not its log, not its database
    // (with its WAL), not any file in its data directory.
    assert!(!b_log.contains(CLIENT_ADDR), "B log:\n{b_log}");
    for (path, held) in all_bytes_under(&b.data_dir()) {
        assert!(
            !contains(&held, CLIENT_ADDR.as_bytes()),
            "{} holds the downloader's address",
            path.display()
        );
    }
    // The outboard was made when the upload completed, named by the id.
    assert!(b.data_dir().join("outboards").join(&id).is_file());
}

#[test]
fn the_file_endpoint_refuses_unsigned_and_forged_requests() {
    let Pair { a, b, id, .. } = two_instances(50_000, &[]);
    let path = format!("/api/s2s/files/{id}");
    let (status, body) = http_request(&b, "GET", &path, &[], b"");
    assert_eq!(status, 401, "{body}");
    // Signed with a key that is not A's, under A's key id.
    let forger = rosewire::fed::identity::InstanceKey::generate(&a.url());
    let headers = signature_headers(&forger, &b, "GET", &path, None, unix_now());
    let (status, body) = http_request(&b, "GET", &path, &headers, b"");
    assert_eq!(status, 401, "{body}");
    // Signed for another path (the offset is signed too).
    let headers = signature_headers(&instance_key_of(&a), &b, "GET", &path, None, unix_now());
    let (status, body) = http_request(&b, "GET", &format!("{path}?offset=1"), &headers, b"");
    assert_eq!(status, 401, "{body}");
    assert!(!b.log().contains("file stream started"), "{}", b.log());
}

#[test]
fn unknown_ids_bad_offsets_and_files_unshared_meanwhile_get_clear_errors() {
    let Pair {
        a,
        b,
        ka,
        kb,
        bytes,
        id,
    } = two_instances(40_000, &[]);
    let unknown = "ab".repeat(32);
    let response = b.signed_get(&a, &format!("/api/s2s/files/{unknown}"));
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    assert!(response.contains(&format!("no file shared here has id {unknown}")));
    let response = b.signed_get(&a, "/api/s2s/files/ABC");
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("\"ABC\" is not a file id"), "{response}");
    let past = bytes.len() + 1;
    let response = b.signed_get(&a, &format!("/api/s2s/files/{id}?offset={past}"));
    assert!(response.starts_with("HTTP/1.1 416"), "{response}");
    assert!(response.contains(&format!("offset {past} is past the end")));

    // Unshared on B: B refuses the id as unknown, and A's user is told why.
    assert_exit(
        &ssh_from(&b, UPLOADER_ADDR, &kb, "bea", &["unshare", "tape.bin"]),
        0,
    );
    let response = b.signed_get(&a, &format!("/api/s2s/files/{id}"));
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    let out = a.ssh(&ka, "alice", &["get", &id]);
    assert_exit(&out, 1);
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    // Either A still listed it and B refused it, or the unshare reached A first.
    assert!(
        err.contains("not shared there any more")
            || err.contains(&format!("no shared file has id {id}")),
        "{err}"
    );
}

#[test]
fn an_instance_gets_at_most_its_upload_slots_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("b.toml");
    std::fs::write(
        &config,
        "[federation]\nrelay_uploads_per_peer = 1\nrelay_uploads = 2\n",
    )
    .unwrap();
    // Large enough that the first stream cannot finish into the socket buffers unread.
    let Pair {
        a,
        b,
        ka,
        bytes,
        id,
        ..
    } = two_instances(64 * 1024 * 1024, &["--config", config.to_str().unwrap()]);
    // A stream held open by a reader that reads nothing.
    let path = format!("/api/s2s/files/{id}");
    let headers = signature_headers(&instance_key_of(&a), &b, "GET", &path, None, unix_now());
    let mut held = std::net::TcpStream::connect((b.ip.as_str(), b.http_port)).unwrap();
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", b.domain);
    for (name, value) in &headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    std::io::Write::write_all(&mut held, head.as_bytes()).unwrap();
    let mut first = [0u8; 12];
    held.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    // A second stream to the same instance is refused while the first is open.
    let response = b.signed_get(&a, &path);
    assert!(response.starts_with("HTTP/1.1 429"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("retry-after: 2"),
        "{response}"
    );
    assert!(response.contains("already streams 1 files"), "{response}");
    let out = a.ssh(&ka, "alice", &["get", &id]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("is busy"), "{}", stderr(&out));

    // Closing it gives the slot back.
    drop(held);
    let mut out = None;
    assert!(wait_until(|| {
        let got = a.ssh(&ka, "alice", &["get", &id]);
        let ok = got.status.code() == Some(0);
        out = Some(got);
        ok
    }));
    assert!(out.unwrap().stdout == bytes);
}

#[test]
fn an_instance_killed_mid_transfer_ends_the_download_with_a_clear_error_and_it_resumes_later() {
    let Pair {
        a,
        mut b,
        ka,
        bytes,
        id,
        ..
    } = two_instances(96 * 1024 * 1024, &[]);
    let mut get = a
        .ssh_command(&ka, "alice", &["get", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A slow reader: take the first MiB, then let the pipes fill while B is killed.
    let mut stdout = get.stdout.take().unwrap();
    let mut received = vec![0u8; 1024 * 1024];
    stdout.read_exact(&mut received).unwrap();
    b.kill();
    stdout.read_to_end(&mut received).unwrap();
    let mut err = String::new();
    get.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = get.wait().unwrap();
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    assert!(
        received.len() < bytes.len(),
        "the whole file arrived before the kill"
    );
    assert!(
        received == bytes[..received.len()],
        "only verified bytes are written"
    );
    assert!(err.contains("broke off"), "{err}");
    assert!(err.contains(&b.domain), "{err}");
    assert!(
        err.contains("the instance went away") || err.contains("connection reset"),
        "{err}"
    );
    // A keeps serving its users.
    assert_exit(&a.ssh(&ka, "alice", &["who"]), 0);

    // B back: the rest, from where the bytes stopped, completes the file.
    b.restart_after_stop();
    let at = received.len().to_string();
    let mut rest = None;
    assert!(wait_until(|| {
        let out = a.ssh(&ka, "alice", &["get", &id, "--offset", &at]);
        let done = out.status.code() == Some(0);
        rest = Some(out);
        done
    }));
    received.extend(rest.unwrap().stdout);
    assert!(
        received == bytes,
        "{} bytes after the resume",
        received.len()
    );
}

#[test]
fn get_with_an_offset_sends_exactly_the_tail_of_a_remote_or_local_file() {
    let Pair {
        a,
        b,
        ka,
        kb,
        bytes,
        id,
    } = two_instances(200_000, &[]);
    for offset in [1usize, 16_383, 16_384, 100_000, 200_000] {
        let at = offset.to_string();
        let out = a.ssh(&ka, "alice", &["get", &id, "--offset", &at]);
        assert_exit(&out, 0);
        assert!(
            out.stdout == bytes[offset..],
            "A, offset {offset}: {} bytes",
            out.stdout.len()
        );
        let out = ssh_from(
            &b,
            UPLOADER_ADDR,
            &kb,
            "bea",
            &["get", &id, "--offset", &at],
        );
        assert_exit(&out, 0);
        assert!(
            out.stdout == bytes[offset..],
            "B, offset {offset}: {} bytes",
            out.stdout.len()
        );
    }
    let out = a.ssh(&ka, "alice", &["get", &id, "--offset", "200001"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("--offset 200001 is past the end of tape.bin (200000 bytes)"),
        "{}",
        stderr(&out)
    );
    let out = a.ssh(&ka, "alice", &["get", &id, "--offset", "x"]);
    assert_exit(&out, 2);
}

/// alice's `downloads/` on A (she is A's first user).
fn downloads_of_alice(a: &Instance) -> std::path::PathBuf {
    a.data_dir().join("users/1/downloads")
}

#[test]
fn a_shell_get_of_a_remote_file_lands_in_downloads_and_resumes_after_kept_bytes() {
    let Pair {
        a,
        b,
        ka,
        bytes,
        id,
        ..
    } = two_instances(300_000, &[]);
    let mut shell = a.line_session(&ka, "alice");
    shell.send(&format!("/get {id}"));
    shell.expect("saved tape.bin");
    let downloads = downloads_of_alice(&a);
    assert!(std::fs::read(downloads.join("tape.bin")).unwrap() == bytes);

    // Bytes kept from an interrupted /get: only the rest is asked for.
    let part = downloads.join(format!("tape.bin.{}.part", &id[..12]));
    std::fs::write(&part, &bytes[..100_000]).unwrap();
    shell.send(&format!("/get {}", &id[..8]));
    shell.expect("in downloads/tape (1).bin");
    assert!(std::fs::read(downloads.join("tape (1).bin")).unwrap() == bytes);
    assert!(!part.exists());
    let log = plain(&b.log());
    assert!(log.contains("offset=100000"), "B log:\n{log}");

    // Kept bytes that are not the file's beginning are caught at the end, and removed.
    let mut wrong = bytes[..100_000].to_vec();
    wrong[5] ^= 1;
    std::fs::write(&part, &wrong).unwrap();
    shell.send(&format!("/get {id}"));
    shell.expect("/get again starts over");
    assert!(!part.exists());
    assert!(!downloads.join("tape (2).bin").exists());
}

/// Sends `signal` (`STOP`, `CONT`) to `node`'s process.
fn signal(node: &Instance, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &node.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn an_instance_that_stalls_mid_transfer_ends_the_download_and_blocks_no_one_else() {
    let Pair {
        a,
        b,
        ka,
        bytes,
        id,
        ..
    } = two_instances(48 * 1024 * 1024, &[]);
    let mut get = a
        .ssh_command(&ka, "alice", &["get", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = get.stdout.take().unwrap();
    let mut received = vec![0u8; 1024 * 1024];
    stdout.read_exact(&mut received).unwrap();
    signal(&b, "STOP");
    // Other users of A are served while the transfer waits on B.
    let other = Key::new("c");
    assert_exit(&a.ssh(&other, "carol", &["who"]), 0);
    stdout.read_to_end(&mut received).unwrap();
    let mut err = String::new();
    get.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = get.wait().unwrap();
    signal(&b, "CONT");
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    assert!(received.len() < bytes.len());
    assert!(received == bytes[..received.len()]);
    assert!(
        err.contains("broke off") && err.contains(&b.domain),
        "{err}"
    );
    assert!(err.contains("nothing arrived for 10 s"), "{err}");
}

#[test]
fn a_downloader_who_goes_away_stops_the_stream_at_the_owners_instance_and_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("b.toml");
    std::fs::write(&config, "[federation]\nrelay_uploads_per_peer = 1\n").unwrap();
    let Pair {
        a,
        b,
        ka,
        bytes,
        id,
        ..
    } = two_instances(64 * 1024 * 1024, &["--config", config.to_str().unwrap()]);
    let mut get = a
        .ssh_command(&ka, "alice", &["get", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = get.stdout.take().unwrap();
    let mut first = vec![0u8; 1000];
    stdout.read_exact(&mut first).unwrap();
    assert!(first == bytes[..1000]);
    // The downloader's ssh dies: its connection to A closes.
    get.kill().unwrap();
    let _ = get.wait();
    // B had not sent the file ahead into buffers (backpressure), so its stream stops.
    assert!(
        wait_until(|| b.log().contains("file stream stopped")),
        "B log:\n{}",
        b.log()
    );
    assert!(!b.log().contains("file stream sent"), "B log:\n{}", b.log());
    // B's only slot for A is back (once the stream's task ended): a whole download goes
    // through.
    let mut last = None;
    assert!(
        wait_until(|| {
            let out = a.ssh(&ka, "alice", &["get", &id]);
            let done = out.status.code() == Some(0);
            last = Some(out);
            done
        }),
        "{}",
        stderr(last.as_ref().unwrap())
    );
    assert!(last.unwrap().stdout == bytes);
}
