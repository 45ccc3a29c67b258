//! Hostile networks: floods of connections that never log in (issue 6, finding 1) and of
//! idle HTTP connections (finding 13) must not lock out a user who can log in.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use crate::util::*;

/// What the server did with a fresh raw connection.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    /// It sent its SSH banner: the connection is being served.
    Served,
    /// It closed the connection at once.
    Closed,
}

/// Reads what the server says first on a raw SSH connection.
fn fate(stream: &mut TcpStream) -> Fate {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => Fate::Closed,
        Ok(n) if buf[..n].starts_with(b"SSH-2.0-RoseWire") => Fate::Served,
        Ok(n) => panic!(
            "unexpected greeting {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Fate::Closed,
        Err(e) => panic!("the server neither greeted nor closed the connection: {e}"),
    }
}

/// Opens `per_address` raw connections from each of `addresses`, reads what the server does
/// with each, and keeps them all open (idle) while the caller holds the result.
fn flood(rose: &Instance, addresses: &[String], per_address: usize) -> Vec<(TcpStream, Fate)> {
    let mut held = Vec::new();
    for from in addresses {
        for _ in 0..per_address {
            let mut stream = connect_from(from, (&rose.ip, rose.ssh_port));
            let fate = fate(&mut stream);
            held.push((stream, fate));
        }
    }
    held
}

fn served(held: &[(TcpStream, Fate)]) -> usize {
    held.iter().filter(|(_, f)| *f == Fate::Served).count()
}

/// Waits until the server closes `stream` (end-of-file or reset); false if it never does.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn an_idle_flood_from_many_addresses_does_not_lock_out_a_login() {
    // Before the fix, each idle connection held one of max_connections places for an hour.
    let rose = Instance::start_with_config(
        "127.0.0.11",
        "[ssh]\n\
         max_connections = 8\n\
         max_unauthenticated_per_address = 4\n\
         max_startups = \"40:30:60\"\n\
         login_grace_secs = 600\n\
         connections_per_minute_per_address = 1000\n",
    );
    let addresses: Vec<String> = (101..109).map(|n| format!("127.0.0.{n}")).collect();
    let held = flood(&rose, &addresses, 12);
    for (i, from) in addresses.iter().enumerate() {
        let mine = &held[i * 12..(i + 1) * 12];
        assert_eq!(
            served(mine),
            4,
            "max_unauthenticated_per_address serves 4 of 12 from {from}"
        );
    }
    // Another address still gets in, and logs in while the flood is held open.
    let alice = Key::new("alice");
    assert_exit(&rose.ssh(&alice, "alice", &["who"]), 0);
    // Logged-in users have places of their own: more of them than the flood left over.
    for n in 0..3 {
        let key = Key::new(&format!("u{n}"));
        assert_exit(&rose.ssh(&key, &format!("user{n}"), &["who"]), 0);
    }
    assert!(
        rose.log()
            .contains("too many unauthenticated connections from this address"),
        "{}",
        rose.log()
    );
    drop(held);
}

#[test]
fn past_max_startups_the_flood_gives_way_to_a_newcomer_from_another_address() {
    let rose = Instance::start_with_config(
        "127.0.0.12",
        "[ssh]\n\
         max_unauthenticated_per_address = 100\n\
         max_startups = \"6\"\n\
         login_grace_secs = 600\n\
         connections_per_minute_per_address = 1000\n",
    );
    let mut held = flood(&rose, &["127.0.0.111".to_owned()], 12);
    assert_eq!(served(&held), 6, "max_startups = \"6\" serves 6 of 12");
    assert!(
        held[6..].iter().all(|(_, f)| *f == Fate::Closed),
        "every connection past full is closed: {:?}",
        held.iter().map(|(_, f)| f).collect::<Vec<_>>()
    );
    // Where OpenSSH would drop every newcomer at random, one from an address the flood does
    // not use takes the place of the flood's oldest connection.
    let mut newcomer = connect_from("127.0.0.112", (&rose.ip, rose.ssh_port));
    assert_eq!(fate(&mut newcomer), Fate::Served);
    assert!(
        closed_by_server(&mut held[0].0),
        "the flood's oldest is cut"
    );
    // And a real login gets through while the flood holds every other place.
    let alice = Key::new("alice");
    assert_exit(&rose.ssh(&alice, "alice", &["who"]), 0);
    // The login displaced another of the flood's and then left the count: the flood may
    // fill that one place again, but not displace anyone, since it holds the most.
    let mut refill = connect_from("127.0.0.111", (&rose.ip, rose.ssh_port));
    assert_eq!(fate(&mut refill), Fate::Served);
    let mut again = connect_from("127.0.0.111", (&rose.ip, rose.ssh_port));
    assert_eq!(fate(&mut again), Fate::Closed);
    drop(held);
}

#[test]
fn a_connection_that_never_logs_in_is_closed_after_the_grace_time() {
    let rose = Instance::start_with_config(
        "127.0.0.13",
        "[ssh]\nlogin_grace_secs = 2\nkeepalive_interval_secs = 1\n",
    );
    // Sends nothing at all, not even its banner.
    let mut silent = connect_from("127.0.0.121", (&rose.ip, rose.ssh_port));
    assert_eq!(fate(&mut silent), Fate::Served);
    // Sends its banner, then nothing.
    let mut stalled = connect_from("127.0.0.122", (&rose.ip, rose.ssh_port));
    assert_eq!(fate(&mut stalled), Fate::Served);
    stalled.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").unwrap();
    assert!(
        closed_by_server(&mut silent),
        "a silent connection stays open past login_grace_secs"
    );
    assert!(
        closed_by_server(&mut stalled),
        "a connection stalled after its banner stays open past login_grace_secs"
    );
}

#[test]
fn a_client_stalled_in_authentication_is_closed_after_the_grace_time() {
    let rose = Instance::start_with_config("127.0.0.14", "[ssh]\nlogin_grace_secs = 2\n");
    let dir = tempfile::tempdir().unwrap();
    // A key with a passphrase: after key exchange, OpenSSH asks for it through SSH_ASKPASS,
    // which holds the login until the test lets it go.
    let key = dir.path().join("id_ed25519");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(keygen.success());
    let release = dir.path().join("release");
    let askpass = dir.path().join("askpass.sh");
    std::fs::write(
        &askpass,
        format!(
            "#!/bin/sh\nwhile [ ! -e '{}' ]; do sleep 0.1; done\necho secret\n",
            release.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // ssh_options() says BatchMode=yes, which forbids askpass; so the options by hand.
    let mut client = Command::new("ssh")
        .args(["-p", &rose.ssh_port.to_string(), "-b", CLIENT_ADDR])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PreferredAuthentications=publickey",
        ])
        .args(["-o", "LogLevel=ERROR", "-o", "ServerAliveInterval=1"])
        .arg("-i")
        .arg(&key)
        .arg(format!("alice@{}", rose.ip))
        .arg("who")
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let closed = wait_until(|| {
        rose.log()
            .contains("ssh connection closed: no login within the grace time")
    });
    std::fs::write(&release, "").unwrap();
    let mut status = None;
    wait_until(|| {
        status = client.try_wait().unwrap();
        status.is_some()
    });
    if status.is_none() {
        let _ = client.kill();
    }
    let out = client.wait_with_output().unwrap();
    assert!(closed, "login deadline never passed; log:\n{}", rose.log());
    assert_exit(&out, 255);
}

#[test]
fn an_http_flood_is_capped_and_leaves_file_descriptors_for_ssh() {
    // Before the fix, HTTP accepted every connection until the process ran out of file
    // descriptors, and the SSH accept loop then failed with "Too many open files".
    let mut rose = Instance::start_with_config(
        "127.0.0.15",
        "[http]\nmax_connections = 16\nmax_connections_per_address = 8\n",
    );
    let pid = rose.pid();
    let open_fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    // Room for the caps and a login, not for the flood.
    let limit = open_fds() + 40;
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit failed");
    let addresses: Vec<String> = (131..141).map(|n| format!("127.0.0.{n}")).collect();
    let mut idle = Vec::new();
    for from in &addresses {
        for _ in 0..20 {
            idle.push(connect_from(from, (&rose.ip, rose.http_port)));
        }
    }
    // The server holds its 16, each refusal closed at once; the rest wait in the backlog.
    assert!(
        wait_until(|| rose.log().matches("http connection accepted").count() >= 16),
        "{}",
        rose.log()
    );
    let alice = Key::new("alice");
    assert_exit(&rose.ssh(&alice, "alice", &["who"]), 0);
    drop(idle);
    let mut health = String::new();
    assert!(
        wait_until(|| {
            health = rose.http_get("/healthz");
            health.ends_with("ok\n")
        }),
        "GET /healthz after the flood: {health:?}"
    );
    let log = rose.log();
    assert!(
        !log.contains("Too many open files"),
        "the process ran out of file descriptors:\n{log}"
    );
    // Shutdown drains HTTP and returns while connections are still open.
    let _lingering = connect_from("127.0.0.131", (&rose.ip, rose.http_port));
    assert!(rose.stop().success(), "{}", rose.log());
}

/// OpenSSH's command line with `extra` options before the destination.
fn ssh_with(rose: &Instance, key: &Key, extra: &[&str], user: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(ssh_options(rose.ssh_port))
        .arg("-i")
        .arg(&key.path)
        .args(extra)
        .arg(format!("{user}@{}", rose.ip))
        .args(args);
    cmd
}

#[test]
fn one_connection_opens_at_most_max_sessions_sessions() {
    let rose = Instance::start_with_config("127.0.0.16", "[ssh]\nmax_sessions = 3\n");
    let alice = Key::new("alice");
    assert_exit(&rose.ssh(&alice, "alice", &["who"]), 0);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mux");
    let path = format!("ControlPath={}", socket.display());
    // One connection (the master), then sessions multiplexed over it.
    let mut master = ssh_with(
        &rose,
        &alice,
        &["-o", "ControlMaster=yes", "-o", &path, "-N"],
        "alice",
        &[],
    )
    .stdin(Stdio::null())
    .spawn()
    .expect("start the master connection");
    assert!(wait_until(|| socket.exists()), "the master never listened");
    // ProxyCommand=false: a session the master cannot open must not fall back to a new
    // connection (OpenSSH's mux client does that by default).
    let mux = [
        "-o",
        "ControlMaster=no",
        "-o",
        path.as_str(),
        "-o",
        "ProxyCommand=false",
        "-T",
    ];
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut session = ssh_with(&rose, &alice, &mux, "alice", &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a multiplexed session");
        // The session is open once its welcome arrives.
        let mut first = [0u8; 1];
        let stdout = session.stdout.as_mut().expect("stdout");
        assert_eq!(stdout.read(&mut first).expect("read the welcome"), 1);
        open.push(session);
    }
    let refused = ssh_with(&rose, &alice, &mux, "alice", &["who"])
        .stdin(Stdio::null())
        .output()
        .expect("run ssh");
    assert_ne!(
        refused.status.code(),
        Some(0),
        "a fourth session was opened"
    );
    assert!(
        stderr(&refused).contains("Session open refused by peer"),
        "{}",
        stderr(&refused)
    );
    assert!(
        rose.log()
            .contains("session channel refused: too many on this connection"),
        "{}",
        rose.log()
    );
    // A session that ends gives its place back.
    let mut first = open.remove(0);
    let _ = first.kill();
    let _ = first.wait();
    assert!(
        wait_until(|| ssh_with(&rose, &alice, &mux, "alice", &["who"])
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())),
        "no session could open after one closed; log:\n{}",
        rose.log()
    );
    for mut session in open {
        let _ = session.kill();
        let _ = session.wait();
    }
    let _ = master.kill();
    let _ = master.wait();
}
