//! HTTPS on the HTTP endpoint: certificates from a test CA, a rustls client trusting only
//! that CA, reloading on SIGHUP, and refusals of a bad configuration.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls::pki_types::{CertificateDer, ServerName};

use crate::federation::{history_of, peers_of, wait_all_know_all};
use crate::util::*;

/// The address every test instance here listens on, named in the test certificates.
const IP: &str = "127.0.0.2";

/// A certificate authority made for one test.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

/// A server certificate and its key, as the files hold them and as the client sees it.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "RoseWire test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            der: cert.der().clone(),
            pem: cert.pem(),
        }
    }

    /// A certificate for [`IP`] with its own new key.
    fn leaf(&self, serial: u64, name: &str) -> Leaf {
        self.leaf_for(IP, serial, name)
    }

    /// A certificate for the address `ip` with its own new key.
    fn leaf_for(&self, ip: &str, serial: u64, name: &str) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![ip.to_owned()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// Where an instance's certificate and key files are.
struct CertFiles {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl CertFiles {
    fn new(leaf: &Leaf) -> CertFiles {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            _dir: dir,
        };
        files.write(leaf);
        files
    }

    fn write(&self, leaf: &Leaf) {
        std::fs::write(&self.cert, &leaf.cert_pem).unwrap();
        std::fs::write(&self.key, &leaf.key_pem).unwrap();
    }

    fn config(&self) -> String {
        format!(
            "[http]\ntls_cert = {:?}\ntls_key = {:?}\n",
            self.cert.display().to_string(),
            self.key.display().to_string()
        )
    }
}

/// A TLS session to `rose` from a client that trusts only `ca`.
fn connect(
    rose: &Instance,
    ca: &TestCa,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(rose.ip.clone()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect((rose.ip.as_str(), rose.http_port)).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap_or_else(|e| {
            panic!("tls handshake with {}: {e}; log:\n{}", rose.ip, rose.log())
        });
    }
    tls
}

/// The certificate `rose` presents to a new handshake.
fn presented(rose: &Instance, ca: &TestCa) -> CertificateDer<'static> {
    let tls = connect(rose, ca);
    let chain = tls.conn.peer_certificates().expect("a certificate");
    chain[0].clone().into_owned()
}

/// `GET path` over TLS; the whole response.
fn https_get(rose: &Instance, ca: &TestCa, path: &str) -> String {
    let mut tls = connect(rose, ca);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        rose.ip
    )
    .unwrap();
    let mut response = Vec::new();
    // A peer that closes without close_notify ends the read with an error; what came is kept.
    let _ = tls.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

fn hangup(rose: &Instance) {
    let status = Command::new("kill")
        .args(["-HUP", &rose.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn https_serves_the_configured_certificate_and_sighup_swaps_in_a_renewed_one() {
    let ca = TestCa::new();
    let first = ca.leaf(1, "rose first");
    let files = CertFiles::new(&first);
    let rose = Instance::start_with_config(IP, &files.config());

    let health = https_get(&rose, &ca, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok\n"), "{health}");
    assert_eq!(presented(&rose, &ca), first.der);
    // curl, offering h2 and http/1.1 by ALPN, verifying the name against the test CA.
    let ca_file = files.cert.with_file_name("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(&ca_file)
        .arg(format!("https://{IP}:{}/healthz", rose.http_port))
        .output()
        .expect("run curl");
    assert_eq!(stdout(&curl), "ok\n", "{}", stderr(&curl));

    // Renewed: a new key, serial and subject, in the same files.
    let renewed = ca.leaf(2, "rose renewed");
    files.write(&renewed);
    hangup(&rose);
    assert!(
        wait_until(|| presented(&rose, &ca) == renewed.der),
        "the renewed certificate was not served after SIGHUP; log:\n{}",
        rose.log()
    );
    let health = https_get(&rose, &ca, "/healthz");
    assert!(health.ends_with("ok\n"), "{health}");
    assert!(rose.log().contains("tls certificate reloaded"));
}

#[test]
fn a_bad_certificate_on_sighup_is_refused_and_the_old_one_stays() {
    let ca = TestCa::new();
    let good = ca.leaf(1, "rose good");
    let files = CertFiles::new(&good);
    let rose = Instance::start_with_config(IP, &files.config());
    assert_eq!(presented(&rose, &ca), good.der);

    // A certificate whose key is not in the key file, then a certificate file that is not PEM.
    let other = ca.leaf(2, "rose other");
    std::fs::write(&files.cert, &other.cert_pem).unwrap();
    hangup(&rose);
    assert!(
        wait_until(|| rose.log().contains("does not belong")),
        "{}",
        rose.log()
    );
    assert_eq!(presented(&rose, &ca), good.der);
    std::fs::write(&files.cert, "not a certificate\n").unwrap();
    hangup(&rose);
    assert!(
        wait_until(|| rose.log().contains("holds no PEM certificate")),
        "{}",
        rose.log()
    );
    assert_eq!(presented(&rose, &ca), good.der);
    assert!(rose.log().contains("the old one stays in use"));
    let health = https_get(&rose, &ca, "/healthz");
    assert!(health.ends_with("ok\n"), "{health}");
}

#[test]
fn shutdown_drains_tls_connections_idle_and_mid_handshake() {
    let ca = TestCa::new();
    let files = CertFiles::new(&ca.leaf(1, "rose"));
    let mut rose = Instance::start_with_config(IP, &files.config());
    let _idle = connect(&rose, &ca);
    // Connected, but no ClientHello: the handshake waits in the connection's task.
    let _silent = TcpStream::connect((rose.ip.as_str(), rose.http_port)).unwrap();
    assert!(wait_until(|| rose
        .log()
        .matches("http connection accepted")
        .count()
        >= 2));
    assert!(rose.stop().success(), "{}", rose.log());
    let log = rose.log();
    assert!(!log.contains("did not close in time"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

/// Runs `rosewire serve` with `config` (expected to fail at start); its stderr.
fn refused_start(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rosewire.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rosewire"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--ssh-listen", &format!("{IP}:0")])
        .args(["--http-listen", &format!("{IP}:0")])
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with {config:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn start_up_refuses_a_certificate_without_a_key_and_names_an_unreadable_file() {
    let err = refused_start("[http]\ntls_cert = \"/nonexistent/cert.pem\"\n");
    assert!(err.contains("http.tls_key is not"), "{err}");
    let missing = Path::new("/nonexistent/cert.pem");
    let err = refused_start(&format!(
        "[http]\ntls_cert = {:?}\ntls_key = \"/nonexistent/key.pem\"\n",
        missing.display().to_string()
    ));
    assert!(
        err.contains("cannot load http.tls_cert") && err.contains("/nonexistent/cert.pem"),
        "{err}"
    );
}

/// A federated instance on `ip` serving HTTPS with a certificate from `ca`, and trusting
/// `ca` (only) for its peers: a dev network that speaks TLS like a real one.
fn start_tls_federated(ip: &str, ca: &TestCa, files: &CertFiles, extra: &[&str]) -> Instance {
    let ca_file = files.cert.with_file_name("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let config = files.cert.with_file_name("rosewire.toml");
    std::fs::write(
        &config,
        format!(
            "{}[federation]\ndev_trusted_root = {:?}\n",
            files.config(),
            ca_file.display().to_string()
        ),
    )
    .unwrap();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    Instance::start_federated(ip, &args)
}

#[test]
fn two_instances_federate_over_tls_with_a_test_ca() {
    let ca = TestCa::new();
    let (a_ip, b_ip) = ("127.0.0.2", "127.0.0.3");
    let a_files = CertFiles::new(&ca.leaf_for(a_ip, 1, "rose a"));
    let b_files = CertFiles::new(&ca.leaf_for(b_ip, 2, "rose b"));
    let a = start_tls_federated(a_ip, &ca, &a_files, &[]);
    let bootstrap = format!("https://{}", a.domain);
    let b = start_tls_federated(b_ip, &ca, &b_files, &["--bootstrap", &bootstrap]);
    let (ka, kw) = (Key::new("alice"), Key::new("watcher"));

    wait_all_know_all(&[&a, &b], &kw);
    // Each names itself, and is named by the other, with https:// URLs.
    let doc = https_get(&b, &ca, "/api/s2s/instance");
    assert!(
        doc.contains(&format!(
            "\"key_id\":\"https://{}/api/s2s/instance#main-key\"",
            b.domain
        )),
        "{doc}"
    );
    // A line said on A arrives on B over the TLS inbox.
    assert_exit(&a.ssh(&ka, "alice", &["say", "over tls"]), 0);
    let from = format!("@alice@{}", a.domain);
    let mut last = Vec::new();
    assert!(
        wait_until(|| {
            last = history_of(&b, &kw, "watcher");
            last.iter().any(|(f, t)| *f == from && t == "over tls")
        }),
        "B's history {last:?}; A log:\n{}\nB log:\n{}",
        a.log(),
        b.log()
    );
    // Nothing between them went in plain text: A's HTTP port speaks only TLS.
    let mut plain = TcpStream::connect((a.ip.as_str(), a.http_port)).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    // The server may hang up on the plain request before it is all written.
    let _ = write!(
        plain,
        "GET /api/s2s/instance HTTP/1.1\r\nHost: {}\r\n\r\n",
        a.domain
    );
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "plain HTTP answered on a TLS port"
    );
    assert!(peers_of(&a, &kw, "watcher").contains(&b.domain));
}
