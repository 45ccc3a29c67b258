//! Inbox throughput (issue 7): signed activities verified and applied per second by one real
//! instance, and the share of its CPU spent checking signatures.
//!
//! Starts two release instances in dev mode on loopback: A (`127.0.0.2`, the receiver) and D
//! (`127.0.0.5`, whose instance key file this bench reads, so that A fetches and pins D's real
//! key on first contact). Signs `ACTIVITIES` chat lines as D (each its own activity by one of
//! `USERS` users `@userN@D`, so the per-user chat rate never drops one), each with its HTTP
//! signature and a fresh nonce, all before the clock starts; then posts them to A's
//! `/api/s2s/inbox` over `CONNECTIONS` keep-alive HTTP/1.1 connections, one thread each, and
//! times until the last answer. Counts the answers (202 applied, 429 over the peer's rate) and
//! the lines in A's `chat_lines` table; A's CPU is `utime + stime` from `/proc/PID/stat`.
//!
//! Twice: with `federation.inbox_per_second` as configured by default (1,000 a second after a
//! burst of 2,000), and with it raised out of the way (`RAISED`). Then a micro-benchmark of
//! the two Ed25519 verifications each activity costs (the request's signature, the
//! envelope's proof), with the same library calls, gives the share of A's CPU they take.
//!
//! Run: `cargo build --release && cargo bench --bench inbox`. Knobs (environment):
//! `ACTIVITIES=20000` (at most 90,000: A remembers 100,000 nonces), `USERS=5000`,
//! `CONNECTIONS=8`, `RAISED=1000000`, `VERIFY_RUNS=10000`, `ROSEWIRE_BIN=path` (default
//! `target/release/rosewire`), `ROSEWIRE_LOG=info`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rosewire::fed::activity::{canonical, Activity, Envelope, Payload};
use rosewire::fed::identity::InstanceKey;
use rosewire::fed::signature::{self, Incoming};
use rosewire_shell::Address;

/// The longest any wait here lasts (a start, a first contact, a drain).
const WAIT: Duration = Duration::from_secs(60);
const INBOX: &str = "/api/s2s/inbox";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A running `rosewire serve --dev` on its own address, data directory and config.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
    ip: String,
    http_port: u16,
    domain: String,
}

impl Server {
    fn start(bin: &Path, ip: &str, config: &str) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let toml = dir.path().join("config.toml");
        std::fs::write(&toml, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(&toml)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--domain", &format!("{ip}:0")])
            .args(["--ssh-listen", &format!("{ip}:0")])
            .args(["--http-listen", &format!("{ip}:0")])
            .arg("--dev")
            .env(
                "ROSEWIRE_LOG",
                std::env::var("ROSEWIRE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut domain = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, d)) = line
                    .strip_prefix("RoseWire ")
                    .and_then(|l| l.split_once(" serving "))
                {
                    domain = d.trim().to_owned();
                }
                if let Some(rest) = line.strip_prefix("listening: ") {
                    let _ = tx.send((domain.clone(), rest.to_owned()));
                }
            }
        });
        let (domain, listening) = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "rosewire on {ip} did not start; log:\n{}",
                std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
            )
        });
        let http_port = listening
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("http="))
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no http= in {listening:?}"));
        Server {
            child,
            dir,
            ip: ip.to_owned(),
            http_port,
            domain,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.domain)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `utime + stime` of the process, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("/proc/PID/stat");
        // Fields after the command name (which may hold spaces) start at field 3.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 =
            fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        ticks as f64 / hz
    }

    /// Lines in the chat table said by users of `domain`.
    fn chat_lines_from(&self, domain: &str) -> u64 {
        let conn = rusqlite::Connection::open_with_flags(
            self.data_dir().join("rosewire.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the database");
        conn.busy_timeout(WAIT).expect("busy timeout");
        conn.query_row(
            "SELECT count(*) FROM chat_lines WHERE from_domain = ?1",
            [domain],
            |row| row.get::<_, i64>(0),
        )
        .expect("count chat lines")
        .unsigned_abs()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One whole HTTP/1.1 request: a chat line by `@user{i % users}@D`, signed as D for A.
fn signed_request(key: &InstanceKey, d: &Server, a: &Server, i: usize, users: usize) -> Vec<u8> {
    let now = unix_now();
    let actor = Address::new(&format!("user{}", i % users), &d.domain);
    let activity = Activity::new(
        &d.url(),
        actor,
        now,
        Payload::Say {
            text: format!("inbox bench line {i}"),
        },
    );
    let body = Envelope::seal(&activity, key.key_id(), |m| key.sign(m)).to_bytes();
    let headers = signature::sign(
        key,
        "POST",
        &format!("{}{INBOX}", a.url()),
        Some(&body),
        now,
        &signature::new_nonce(),
    )
    .expect("sign");
    let mut head = format!(
        "POST {INBOX} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        a.domain,
        body.len()
    );
    for (name, value) in headers.pairs() {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(&body);
    request
}

/// A keep-alive HTTP/1.1 connection that sends whole requests and reads status codes.
struct Connection {
    to: (String, u16),
    stream: Option<(TcpStream, BufReader<TcpStream>)>,
}

impl Connection {
    fn new(to: (String, u16)) -> Connection {
        Connection { to, stream: None }
    }

    /// Sends `request` and returns the status; reconnects once if the server closed.
    fn send(&mut self, request: &[u8]) -> u16 {
        for _ in 0..2 {
            if self.stream.is_none() {
                let stream = TcpStream::connect((self.to.0.as_str(), self.to.1)).expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                stream.set_read_timeout(Some(WAIT)).expect("read timeout");
                let reader = BufReader::new(stream.try_clone().expect("clone"));
                self.stream = Some((stream, reader));
            }
            if let Some(status) = self.exchange(request) {
                return status;
            }
            self.stream = None;
        }
        0
    }

    fn exchange(&mut self, request: &[u8]) -> Option<u16> {
        let (stream, reader) = self.stream.as_mut()?;
        stream.write_all(request).ok()?;
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut length = 0usize;
        let mut close = false;
        loop {
            line.clear();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().ok()?;
                } else if name.eq_ignore_ascii_case("connection")
                    && value.eq_ignore_ascii_case("close")
                {
                    close = true;
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).ok()?;
        if close {
            self.stream = None;
        }
        Some(status)
    }
}

/// What one timed run measured.
struct Run {
    sent: usize,
    accepted: usize,
    too_fast: usize,
    other: Vec<u16>,
    wall: f64,
    cpu: f64,
    applied: u64,
}

/// Starts a fresh A with `config`, lets it pin D's key, posts `requests` and counts.
fn run(
    bin: &Path,
    d: &Server,
    key: &InstanceKey,
    config: &str,
    n: usize,
    users: usize,
    connections: usize,
) -> Run {
    let a = Server::start(bin, "127.0.0.2", config);
    // First contact: A fetches D's instance document and pins its key.
    let warm = signed_request(key, d, &a, n, users);
    let status = Connection::new((a.ip.clone(), a.http_port)).send(&warm);
    assert_eq!(
        status,
        202,
        "the first activity was refused; A log:\n{}",
        log_of(&a)
    );
    let before_lines = a.chat_lines_from(&d.domain);

    eprintln!("  signing {n} activities as {} ...", d.domain);
    let requests: Vec<Vec<u8>> = (0..n)
        .map(|i| signed_request(key, d, &a, i, users))
        .collect();
    let mut shares: Vec<Vec<Vec<u8>>> = (0..connections).map(|_| Vec::new()).collect();
    for (i, r) in requests.into_iter().enumerate() {
        shares[i % connections].push(r);
    }

    let cpu_before = a.cpu_seconds();
    let start = Instant::now();
    let threads: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let to = (a.ip.clone(), a.http_port);
            std::thread::spawn(move || {
                let mut conn = Connection::new(to);
                share.iter().map(|r| conn.send(r)).collect::<Vec<u16>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("sender thread"))
        .collect();
    let wall = start.elapsed().as_secs_f64();
    let cpu = a.cpu_seconds() - cpu_before;
    let applied = a.chat_lines_from(&d.domain) - before_lines;
    let other: Vec<u16> = statuses
        .iter()
        .copied()
        .filter(|s| *s != 202 && *s != 429)
        .collect();
    if !other.is_empty() {
        eprintln!(
            "  unexpected answers; A log tail:\n{}",
            tail(&log_of(&a), 20)
        );
    }
    Run {
        sent: statuses.len(),
        accepted: statuses.iter().filter(|s| **s == 202).count(),
        too_fast: statuses.iter().filter(|s| **s == 429).count(),
        other,
        wall,
        cpu,
        applied,
    }
}

fn log_of(s: &Server) -> String {
    std::fs::read_to_string(s.dir.path().join("server.log")).unwrap_or_default()
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Seconds per call of `f`, over `runs` calls.
fn time_per_call(runs: usize, mut f: impl FnMut() -> bool) -> f64 {
    let start = Instant::now();
    let mut ok = 0usize;
    for _ in 0..runs {
        ok += usize::from(std::hint::black_box(f()));
    }
    let per = start.elapsed().as_secs_f64() / runs as f64;
    assert_eq!(ok, runs, "a verification failed");
    per
}

/// The per-activity cost of the checks, with the library calls the inbox makes:
/// (the request signature's Ed25519 verify, the proof's Ed25519 verify, the whole check:
/// header parsing + digest + both verifies + envelope parsing and schema).
fn verify_costs(key: &InstanceKey, d: &Server, runs: usize) -> (f64, f64, f64) {
    let base = "http://127.0.0.2:8080";
    let activity = Activity::new(
        &d.url(),
        Address::new("user1", &d.domain),
        unix_now(),
        Payload::Say {
            text: "inbox bench line 1".into(),
        },
    );
    let body = Envelope::seal(&activity, key.key_id(), |m| key.sign(m)).to_bytes();
    let target = format!("{base}{INBOX}");
    let h = signature::sign(
        key,
        "POST",
        &target,
        Some(&body),
        unix_now(),
        &signature::new_nonce(),
    )
    .expect("sign");
    let public = key.public_key();
    let incoming = Incoming {
        method: "POST",
        target_uri: &target,
        signature_input: Some(&h.signature_input),
        signature: Some(&h.signature),
        content_digest: h.content_digest.as_deref(),
        body: &body,
    };
    let checked = signature::check(&incoming, unix_now()).expect("check");
    let envelope = Envelope::parse(&body).expect("envelope");
    let message = canonical(&envelope.activity);
    use base64::Engine as _;
    let proof = base64::engine::general_purpose::STANDARD
        .decode(&envelope.proof.signature)
        .expect("base64");
    let http = time_per_call(runs, || checked.verify(&public));
    let proof_cost = time_per_call(runs, || public.verify(message.as_bytes(), &proof));
    let whole = time_per_call(runs, || {
        let checked = signature::check(&incoming, unix_now()).expect("check");
        let envelope = Envelope::parse(&body).expect("envelope");
        checked.verify(&public)
            && envelope
                .open(rosewire::config::Scheme::Http, |m, s| public.verify(m, s))
                .is_ok()
    });
    (http, proof_cost, whole)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let n = env_or("ACTIVITIES", 20_000).min(90_000);
    let users = env_or("USERS", 5_000).max(1);
    let connections = env_or("CONNECTIONS", 8).max(1);
    let raised = env_or("RAISED", 1_000_000);
    let verify_runs = env_or("VERIFY_RUNS", 10_000).max(1);
    let bin = std::env::var_os("ROSEWIRE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/rosewire"));
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --release` first (or set ROSEWIRE_BIN)",
        bin.display()
    );

    let d = Server::start(&bin, "127.0.0.5", "# defaults\n");
    let text = std::fs::read_to_string(d.data_dir().join("instance_ed25519_key"))
        .expect("D's instance key file");
    let pair = russh::keys::PrivateKey::from_openssh(text).expect("an OpenSSH key");
    let key = InstanceKey::new(&pair, &d.url()).expect("an instance key");

    println!(
        "inbox throughput: {n} signed chat activities from {users} users of one peer, {connections} keep-alive connections, release build {}",
        bin.display()
    );
    println!();
    println!("| inbox_per_second | sent | 202 applied | 429 | other | wall s | answered/s | applied lines | applied/s | A CPU s | A CPU % of one core |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut runs = Vec::new();
    for (label, config) in [
        ("1000 (default)".to_owned(), "# defaults\n".to_owned()),
        (
            format!("{raised} (raised)"),
            format!("[federation]\ninbox_per_second = {raised}\n"),
        ),
    ] {
        eprintln!("run: inbox_per_second {label}");
        let r = run(&bin, &d, &key, &config, n, users, connections);
        println!(
            "| {label} | {} | {} | {} | {} | {:.2} | {:.0} | {} | {:.0} | {:.2} | {:.0}% |",
            r.sent,
            r.accepted,
            r.too_fast,
            if r.other.is_empty() {
                "0".to_owned()
            } else {
                format!("{} ({:?})", r.other.len(), &r.other[..r.other.len().min(5)])
            },
            r.wall,
            r.sent as f64 / r.wall,
            r.applied,
            r.applied as f64 / r.wall,
            r.cpu,
            100.0 * r.cpu / r.wall
        );
        runs.push(r);
    }

    let (http, proof, whole) = verify_costs(&key, &d, verify_runs);
    println!();
    println!(
        "signature checks ({verify_runs} runs each): request signature verify {:.1} µs, proof verify {:.1} µs, both {:.1} µs; whole check (parse headers, digest, both verifies, envelope schema) {:.1} µs",
        http * 1e6,
        proof * 1e6,
        (http + proof) * 1e6,
        whole * 1e6
    );
    for (label, r) in ["default", "raised"].iter().zip(&runs) {
        // Every request's signature is verified; the proof only of those past the rate check.
        let verify_cpu = r.sent as f64 * http + (r.sent - r.too_fast) as f64 * proof;
        let check_cpu = r.sent as f64 * whole;
        println!(
            "CPU share of signature checks ({label} cap): Ed25519 verifies {:.1}% of A's CPU ({:.2} s of {:.2} s), whole checks {:.1}%; A's CPU per applied activity {:.0} µs",
            100.0 * verify_cpu / r.cpu,
            verify_cpu,
            r.cpu,
            100.0 * check_cpu / r.cpu,
            if r.applied > 0 { 1e6 * r.cpu / r.applied as f64 } else { 0.0 }
        );
    }
}
