//! Shared helpers: real `rosewire` instances on loopback, keys from `ssh-keygen`, and real
//! OpenSSH clients. Every wait is bounded ([`WAIT`]) and polls; no test asserts a duration.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest any test waits for an outcome before it fails (machines here are shared and noisy).
pub const WAIT: Duration = Duration::from_secs(30);
/// Pause between two looks at a condition.
const POLL: Duration = Duration::from_millis(50);
/// The loopback address OpenSSH clients bind to, distinct from every instance's address.
pub const CLIENT_ADDR: &str = "127.0.0.9";

/// Polls `cond` until it is true or [`WAIT`] has passed; returns whether it became true.
pub fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if cond() {
            return true;
        }
        std::thread::sleep(POLL);
    }
    cond()
}

/// A running `rosewire serve` on its own loopback address and data directory.
pub struct Instance {
    pub dir: tempfile::TempDir,
    pub ip: String,
    pub domain: String,
    pub ssh_port: u16,
    pub http_port: u16,
    child: Option<Child>,
    pub stdout: Arc<Mutex<String>>,
    /// Federated instances are named by `IP:HTTP_PORT` and keep their ports across restarts.
    federated: bool,
    /// Arguments given at the first start, given again on restarts.
    extra: Vec<String>,
}

impl Instance {
    /// Starts an instance listening on `ip` (ephemeral ports), in dev mode.
    pub fn start(ip: &str) -> Instance {
        Self::start_with(ip, &[])
    }

    pub fn start_with(ip: &str, extra: &[&str]) -> Instance {
        let dir = tempfile::tempdir().expect("temp dir");
        let domain = format!("{}.rose.test", ip.replace('.', "-"));
        let mut instance = Instance {
            dir,
            ip: ip.to_owned(),
            domain,
            ssh_port: 0,
            http_port: 0,
            child: None,
            stdout: Arc::default(),
            federated: false,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        instance.spawn(extra);
        instance
    }

    /// Starts an instance on `ip` for federation tests: named `IP:PORT` (its HTTP port, which
    /// it keeps across restarts), in dev mode.
    pub fn start_federated(ip: &str, extra: &[&str]) -> Instance {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut instance = Instance {
            dir,
            ip: ip.to_owned(),
            domain: format!("{ip}:0"),
            ssh_port: 0,
            http_port: 0,
            child: None,
            stdout: Arc::default(),
            federated: true,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        instance.spawn(extra);
        instance
    }

    /// This instance's HTTP base URL (`http://IP:PORT`), for `--bootstrap`.
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.ip, self.http_port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("instance is running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        // A federated instance restarts on its port (0 the first time): its domain names it.
        let http_port = if self.federated { self.http_port } else { 0 };
        let http_listen = format!("{}:{http_port}", self.ip);
        if self.federated {
            self.domain = http_listen.clone();
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_rosewire"))
            .arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--domain", &self.domain])
            .args(["--ssh-listen", &format!("{}:0", self.ip)])
            .args(["--http-listen", &http_listen])
            .arg("--dev")
            .args(extra)
            .env("ROSEWIRE_LOG", "info,rosewire=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start rosewire");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = self.stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("listening: ") {
                    let _ = tx.send(rest.to_owned());
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let listening = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("rosewire did not start; log:\n{}", self.log()));
        let port = |key: &str| -> u16 {
            listening
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {listening:?}"))
        };
        self.ssh_port = port("ssh=");
        self.http_port = port("http=");
        if self.federated {
            self.domain = format!("{}:{}", self.ip, self.http_port);
        }
        self.child = Some(child);
        if self.federated {
            // "RoseWire VERSION serving DOMAIN", printed before the listening line.
            let out = self.stdout.lock().unwrap().clone();
            self.domain = out
                .lines()
                .find_map(|l| l.strip_prefix("RoseWire ")?.split_once(" serving "))
                .map(|(_, domain)| domain.trim().to_owned())
                .unwrap_or_else(|| panic!("no serving line in {out:?}"));
        }
    }

    /// Sends SIGTERM and waits for the process; returns its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("instance is running");
        signal(&child, "TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if start.elapsed() > WAIT {
                let _ = child.kill();
                panic!("rosewire did not stop on SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would; [`Instance::restart_after_stop`]
    /// starts it again.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("instance is running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops and starts again on the same data directory (new ports).
    pub fn restart(&mut self) {
        assert!(
            self.stop().success(),
            "clean exit expected; log:\n{}",
            self.log()
        );
        self.respawn();
    }

    /// Starts again after [`Instance::stop`].
    pub fn restart_after_stop(&mut self) {
        self.respawn();
    }

    /// Stops and starts again with other arguments (a federated instance keeps its domain).
    pub fn restart_with(&mut self, extra: &[&str]) {
        assert!(
            self.stop().success(),
            "clean exit expected; log:\n{}",
            self.log()
        );
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.respawn();
    }

    /// Starts the process again; a federated instance keeps its ports (and so its domain),
    /// the others get new ones.
    fn respawn(&mut self) {
        if !self.federated {
            self.ssh_port = 0;
            self.http_port = 0;
        }
        let extra = self.extra.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        self.spawn(&extra);
    }

    /// `ssh ... user@instance ARGS` with `key`, no terminal, stdin closed.
    pub fn ssh(&self, key: &Key, user: &str, args: &[&str]) -> Output {
        self.ssh_command(key, user, args)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }

    /// The OpenSSH command line to reach this instance as `user`.
    pub fn ssh_command(&self, key: &Key, user: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(ssh_options(self.ssh_port))
            .arg("-i")
            .arg(&key.path)
            .arg(format!("{user}@{}", self.ip))
            .args(args);
        cmd
    }

    /// The command line as one shell string (for tmux).
    pub fn ssh_shell_line(&self, key: &Key, user: &str, extra: &str) -> String {
        format!(
            "ssh {} -i {} {extra} {user}@{}",
            ssh_options(self.ssh_port).join(" "),
            key.path.display(),
            self.ip
        )
    }

    /// A plain line-mode shell (`ssh -T host`) whose output is collected in the background.
    pub fn line_session(&self, key: &Key, user: &str) -> LineSession {
        let mut child = self
            .ssh_command(key, user, &["-T"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ssh -T");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().expect("stdout"), out.clone());
        collect(child.stderr.take().expect("stderr"), err.clone());
        let stdin = child.stdin.take();
        LineSession {
            child,
            stdin,
            out,
            err,
        }
    }

    pub fn http_get(&self, path: &str) -> String {
        let mut stream =
            std::net::TcpStream::connect((self.ip.as_str(), self.http_port)).expect("connect http");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.domain
        )
        .unwrap();
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read http response");
        response
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
}

pub fn ssh_options(port: u16) -> Vec<String> {
    [
        "-p",
        &port.to_string(),
        "-b",
        CLIENT_ADDR,
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=30",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// An interactive session without a terminal, fed through stdin.
pub struct LineSession {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

impl LineSession {
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn output_bytes(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }

    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output_bytes()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    /// Waits until the output contains `needle`; panics with the whole output if it never does.
    pub fn expect(&self, needle: &str) {
        assert!(
            wait_until(|| self.output().contains(needle)),
            "never saw {needle:?}; output:\n{}\nstderr:\n{}",
            self.output(),
            self.stderr()
        );
    }

    pub fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        let mut status = None;
        wait_until(|| {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status
    }
}

impl Drop for LineSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An Ed25519 key pair made by `ssh-keygen`.
pub struct Key {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Key {
    pub fn new(name: &str) -> Key {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(name);
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .status()
            .expect("run ssh-keygen");
        assert!(status.success(), "ssh-keygen failed");
        Key { _dir: dir, path }
    }

    pub fn public(&self) -> String {
        std::fs::read_to_string(self.path.with_extension("pub"))
            .expect("public key")
            .trim()
            .to_owned()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts an exit code, printing both streams when it differs.
#[track_caller]
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// A tmux server of its own, for driving `ssh -tt` like a person at a terminal.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in a detached session of `cols` x `rows`.
    pub fn start(command: &str, cols: u16, rows: u16) -> Tmux {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let socket = format!(
            "rosewire-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let status = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d", "-x"])
            .arg(cols.to_string())
            .arg("-y")
            .arg(rows.to_string())
            .arg(command)
            .env("TERM", "xterm-256color")
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        Tmux { socket }
    }

    pub fn send_keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "0"])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Types text literally (no key-name interpretation).
    pub fn type_text(&self, text: &str) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "0", "-l", text])
            .status()
            .expect("tmux send-keys -l");
        assert!(status.success());
    }

    pub fn resize(&self, cols: u16, rows: u16) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "resize-window", "-t", "0", "-x"])
            .arg(cols.to_string())
            .arg("-y")
            .arg(rows.to_string())
            .status()
            .expect("tmux resize-window");
        assert!(status.success());
    }

    pub fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "0"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen satisfies `cond`; panics showing the screen if it never does.
    pub fn expect(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let mut screen = String::new();
        let ok = wait_until(|| {
            screen = self.capture();
            cond(&screen)
        });
        assert!(ok, "screen never showed {what}; last screen:\n{screen}");
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

pub fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

impl Instance {
    /// Starts an instance on `ip` with `toml` as its config file (flags still set the
    /// addresses, the domain and the data directory).
    pub fn start_with_config(ip: &str, toml: &str) -> Instance {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("rosewire.toml");
        std::fs::write(&config, toml).expect("write config");
        Instance::start_with(ip, &["--config", config.to_str().expect("utf-8 path")])
    }
}

/// A TCP connection to `to` from the loopback address `from`, as a client elsewhere would.
pub fn connect_from(from: &str, to: (&str, u16)) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let local: std::net::SocketAddr = format!("{from}:0").parse().expect("source address");
    let remote: std::net::SocketAddr = format!("{}:{}", to.0, to.1).parse().expect("address");
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.bind(&local.into()).expect("bind the source address");
    socket.connect(&remote.into()).expect("connect");
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream
}

/// Signs as instance `node` with its real instance key (read from its data directory), so a
/// receiver fetches and pins `node`'s real key document.
pub fn instance_key_of(node: &Instance) -> rosewire::fed::identity::InstanceKey {
    let text = std::fs::read_to_string(node.data_dir().join("instance_ed25519_key"))
        .expect("instance key file");
    let key = russh::keys::PrivateKey::from_openssh(text).expect("an OpenSSH key");
    rosewire::fed::identity::InstanceKey::new(&key, &node.url()).expect("an instance key")
}

/// A raw HTTP/1.1 request to `to`; returns (status, body).
pub fn http_request(
    to: &Instance,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let response = http_request_raw(to, method, path, headers, body);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// A raw HTTP/1.1 request to `to`; returns the whole response as text.
pub fn http_request_raw(
    to: &Instance,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> String {
    let mut stream =
        std::net::TcpStream::connect((to.ip.as_str(), to.http_port)).expect("connect http");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        to.domain,
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(body).expect("send body");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response
}

/// RFC 9421 signature headers for a request to `to`, signed by `key` at `created`.
pub fn signature_headers(
    key: &rosewire::fed::identity::InstanceKey,
    to: &Instance,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    created: i64,
) -> Vec<(&'static str, String)> {
    use rosewire::fed::signature;
    // Test instances speak plain http (dev mode without a trusted root).
    let base = rosewire::config::Scheme::Http.base_url(&to.domain);
    let headers = signature::sign(
        key,
        method,
        &format!("{base}{path}"),
        body,
        created,
        &signature::new_nonce(),
    )
    .expect("sign");
    headers
        .pairs()
        .into_iter()
        .map(|(n, v)| (n, v.to_owned()))
        .collect()
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

impl Instance {
    /// A signed `GET path` to this instance, as instance `signer` (a running federated
    /// instance, whose key this one fetches on first contact); returns the raw response.
    pub fn signed_get(&self, signer: &Instance, path: &str) -> String {
        let key = instance_key_of(signer);
        let headers = signature_headers(&key, self, "GET", path, None, unix_now());
        http_request_raw(self, "GET", path, &headers, b"")
    }
}
