//! The server as an operator sees it: start-up, logs, HTTP, panics, shutdown.

use std::process::Command;

use crate::util::*;

#[test]
fn serve_creates_its_data_directory_host_key_and_database() {
    let rose = Instance::start("127.0.0.5");
    let key = rose.data_dir().join("host_ed25519_key");
    assert_eq!(file_mode(&key), 0o600);
    assert_eq!(file_mode(&rose.data_dir()), 0o700);
    assert!(rose.data_dir().join("rosewire.db").exists());
    let banner = rose.stdout.lock().unwrap().clone();
    assert!(
        banner.contains(&format!("ssh -p {} YOURNICK@", rose.ssh_port)),
        "{banner}"
    );
}

#[test]
fn every_accepted_connection_is_logged_with_its_peer_address() {
    let rose = Instance::start("127.0.0.5");
    assert_exit(&rose.ssh(&Key::new("a"), "alice", &["who"]), 0);
    assert!(rose.http_get("/healthz").contains("ok"));
    assert!(wait_until(|| {
        let log = rose.log();
        log.contains("ssh connection accepted") && log.contains("http connection accepted")
    }));
    let log = rose.log();
    let ssh_line = log
        .lines()
        .find(|l| l.contains("ssh connection accepted"))
        .unwrap();
    assert!(ssh_line.contains(CLIENT_ADDR), "{ssh_line}");
    assert!(ssh_line.contains("INFO"), "{ssh_line}");
}

#[test]
fn http_answers_health_and_a_landing_page() {
    let rose = Instance::start("127.0.0.5");
    let health = rose.http_get("/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let landing = rose.http_get("/");
    assert!(
        landing.contains(&format!("ssh -p {}", rose.ssh_port)),
        "{landing}"
    );
    assert!(rose.http_get("/nope").starts_with("HTTP/1.1 404"));
}

#[test]
fn a_panic_ends_only_its_own_session() {
    let rose = Instance::start("127.0.0.5");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let bob = rose.line_session(&b, "bob");
    bob.expect("Welcome to RoseWire");
    let boom = rose.ssh(&a, "alice", &["__panic"]);
    assert_exit(&boom, 1);
    assert!(
        stderr(&boom).contains("internal error"),
        "{}",
        stderr(&boom)
    );
    // The server, and bob's open session, carry on.
    assert_exit(&rose.ssh(&a, "alice", &["say", "still", "here"]), 0);
    bob.expect("<alice> still here");
    assert!(rose.log().contains("session panicked"));
}

#[test]
fn sigterm_tells_sessions_and_closes_the_database_cleanly() {
    let mut rose = Instance::start("127.0.0.5");
    let (a, b) = (Key::new("a"), Key::new("b"));
    assert_exit(&rose.ssh(&a, "alice", &["say", "before", "shutdown"]), 0);
    let mut bob = rose.line_session(&b, "bob");
    bob.expect("<alice> before shutdown");
    let status = rose.stop();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        rose.log()
    );
    bob.expect("shutting down");
    assert!(bob.wait_exit().is_some(), "bob's client was disconnected");
    assert!(rose.log().contains("database closed"), "{}", rose.log());
    // A clean close leaves no write-ahead log behind, and the line survived.
    assert!(
        !rose.data_dir().join("rosewire.db-wal").exists()
            || std::fs::metadata(rose.data_dir().join("rosewire.db-wal"))
                .unwrap()
                .len()
                == 0
    );
    rose.restart_after_stop();
    let history = stdout(&rose.ssh(&a, "alice", &["history"]));
    assert!(history.contains("before shutdown"), "{history}");
}

#[test]
fn an_unknown_config_key_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rosewire.toml");
    std::fs::write(
        &config,
        "[ssh]\nlisten = \"127.0.0.5:0\"\nmax_conections = 5\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rosewire"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("max_conections"), "{}", stderr(&out));
}

#[test]
fn init_writes_a_commented_config_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_rosewire"))
            .args(["init", "--domain", "rose.example", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap()
    };
    assert_exit(&run(), 0);
    let config = std::fs::read_to_string(data.join("rosewire.toml")).unwrap();
    assert!(config.contains("domain = \"rose.example\""), "{config}");
    assert!(
        config.lines().filter(|l| l.starts_with('#')).count() > 5,
        "commented"
    );
    assert_eq!(file_mode(&data.join("host_ed25519_key")), 0o600);
    assert_eq!(file_mode(&data.join("instance_ed25519_key")), 0o600);
    let again = run();
    assert_exit(&again, 1);
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn version_and_help_work() {
    let out = Command::new(env!("CARGO_BIN_EXE_rosewire"))
        .arg("--version")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(stdout(&out).contains(env!("CARGO_PKG_VERSION")));
    let help = Command::new(env!("CARGO_BIN_EXE_rosewire"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    for flag in [
        "--config",
        "--data-dir",
        "--domain",
        "--ssh-listen",
        "--http-listen",
        "--bootstrap",
        "--dev",
    ] {
        assert!(stdout(&help).contains(flag), "serve --help lacks {flag}");
    }
}

#[test]
fn new_connections_from_one_address_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rosewire.toml");
    std::fs::write(&config, "[ssh]\nconnections_per_minute_per_address = 3\n").unwrap();
    let rose = Instance::start_with("127.0.0.5", &["--config", config.to_str().unwrap()]);
    let a = Key::new("a");
    for _ in 0..3 {
        assert_exit(&rose.ssh(&a, "alice", &["who"]), 0);
    }
    let refused = rose.ssh(&a, "alice", &["who"]);
    assert_exit(&refused, 255);
    assert!(
        rose.log().contains("too many new connections"),
        "{}",
        rose.log()
    );
}
