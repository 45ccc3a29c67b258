//! The outgoing S2S client: every request signed with the instance key (GETs too), blocking
//! ureq calls run off the async runtime, each with timeouts and a response size cap.
//!
//! **SSRF:** every request, whatever asked for it (first contact with a signer, catalog pulls,
//! gossip asks, deliveries, profile fetches), goes through `CheckedResolver`: the URL's host
//! is resolved and every address checked with [`target::check_addresses`] before ureq connects,
//! and ureq connects only to the addresses checked (no second lookup, so DNS rebinding between
//! the check and the connection is not possible). Proxies from the environment are ignored,
//! since a proxy would resolve the name itself.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::identity::{
    key_id_domain, key_id_for, plausible_domain, InstanceKey, PublicKey, INSTANCE_PATH,
};
use super::signature;
use super::target::{self, TargetError};
use crate::config::Scheme;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};

/// Time to open the TCP connection (and finish the TLS handshake's connect step).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for the response head to arrive once the request is sent, and again for its body.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the whole call, from resolving the name to the last byte of the body.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response body read, in bytes (a catalog page of 1,000 files is about 400 KB).
pub const RESPONSE_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Time allowed between two reads of a streamed answer (a file from another instance); a
/// stream has no overall limit, but a peer that sends nothing for this long has stalled.
pub const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error response's body is kept in [`FetchError::Status`], in characters.
const ERROR_TEXT_MAX: usize = 200;

/// Why an S2S call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The peer answered with a non-2xx status (and this text).
    #[error("the peer answered {0}: {1}")]
    Status(u16, String),
    /// No answer: name resolution, connection, TLS, timeout.
    #[error("cannot reach the peer: {0}")]
    Transport(String),
    /// The answer was over [`RESPONSE_MAX_BYTES`].
    #[error("the peer's answer is over {RESPONSE_MAX_BYTES} bytes")]
    TooLarge,
    /// The answer, or the URL asked for, is not what the protocol allows.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The URL's host resolves to an address federation must not reach (loopback, private,
    /// link-local.. outside `--dev`): the SSRF check of [`target::check_addresses`], with the
    /// domain and the address.
    #[error("not reached: {0}")]
    Forbidden(String),
}

impl FetchError {
    /// Whether the peer refused this request for good: a 4xx other than 401 (its key cache
    /// may be behind), 408 and 429 (retry later). Retrying cannot help such a request.
    pub fn is_permanent(&self) -> bool {
        matches!(self, FetchError::Status(code, _)
            if (400..500).contains(code) && !matches!(code, 401 | 408 | 429))
    }
}

/// `GET /api/s2s/instance`: how an instance names itself and its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceDoc {
    pub domain: String,
    /// `{base_url}/api/s2s/instance#main-key`.
    pub key_id: String,
    /// SPKI PEM of the Ed25519 key.
    pub public_key_pem: String,
    /// `"rosewire"`.
    pub software: String,
    pub version: String,
}

impl InstanceDoc {
    /// This instance's document.
    pub fn of(domain: &str, key: &InstanceKey) -> InstanceDoc {
        InstanceDoc {
            domain: domain.to_owned(),
            key_id: key.key_id().to_owned(),
            public_key_pem: key.public_key_pem(),
            software: "rosewire".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// The key of a document fetched from `domain` (reached at `base_url`): the document must
    /// name that domain, its key id must be that instance's, and its key must parse.
    pub fn key_for(&self, domain: &str, base_url: &str) -> Result<PublicKey, FetchError> {
        if self.domain != domain {
            return Err(FetchError::Invalid(format!(
                "the instance document of {domain} names {:?}",
                self.domain
            )));
        }
        if key_id_domain(&self.key_id) != Some(domain) || self.key_id != key_id_for(base_url) {
            return Err(FetchError::Invalid(format!(
                "the key id {:?} does not belong to {domain}",
                self.key_id
            )));
        }
        PublicKey::from_pem(&self.public_key_pem)
            .map_err(|e| FetchError::Invalid(format!("{domain}: {e}")))
    }
}

/// The signed S2S client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// Connection pool, timeouts, TLS roots; no redirects.
    agent: ureq::Agent,
    /// What every request is signed with.
    key: Arc<InstanceKey>,
    /// The one scheme peers are reached with (`Config::scheme`): URLs of another are refused.
    scheme: Scheme,
}

impl Client {
    /// A client signing with `key`, reaching peers over `scheme` only (`Config::scheme`:
    /// `http://` only in dev mode without a trusted root). `extra_root_pem` (a PEM CA
    /// certificate file, `federation.dev_trusted_root`, which `Config::validate` allows in dev
    /// mode only) is the root trusted for `https://` instead of the public roots. In `dev`
    /// mode the SSRF check lets loopback and private addresses through.
    pub fn new(
        key: Arc<InstanceKey>,
        scheme: Scheme,
        dev: bool,
        extra_root_pem: Option<PathBuf>,
    ) -> anyhow::Result<Client> {
        let mut config = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(READ_TIMEOUT))
            .timeout_recv_body(Some(READ_TIMEOUT))
            .timeout_global(Some(CALL_TIMEOUT))
            .http_status_as_error(false)
            // A redirect would send a signature made for one URL to another.
            .max_redirects(0)
            .https_only(scheme == Scheme::Https)
            // A proxy resolves the name itself, out of reach of the SSRF check.
            .proxy(None)
            .user_agent(concat!("rosewire/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = extra_root_pem {
            anyhow::ensure!(
                scheme == Scheme::Https,
                "federation.dev_trusted_root is a root for https://, but peers are reached over {scheme}"
            );
            let roots = read_roots(&path)?;
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
                    .build(),
            );
        }
        Ok(Client {
            inner: Arc::new(Inner {
                agent: ureq::Agent::with_parts(
                    config.build(),
                    ureq::unversioned::transport::DefaultConnector::default(),
                    CheckedResolver { dev },
                ),
                key,
                scheme,
            }),
        })
    }

    /// The key requests are signed with.
    pub fn key(&self) -> &Arc<InstanceKey> {
        &self.inner.key
    }

    /// The scheme peers are reached with: every peer URL and key id is `{scheme}DOMAIN...`.
    pub fn scheme(&self) -> Scheme {
        self.inner.scheme
    }

    /// A signed GET of `url`, its JSON answer parsed.
    pub async fn get_json<T: DeserializeOwned + Send + 'static>(
        &self,
        url: &str,
    ) -> Result<T, FetchError> {
        let body = self.call("GET", url, None).await?;
        serde_json::from_slice(&body).map_err(|e| {
            FetchError::Invalid(format!("the answer of {url} is not the json expected: {e}"))
        })
    }

    /// A signed POST of the JSON `body` to `url`; any 2xx is success.
    pub async fn post_json(&self, url: &str, body: Vec<u8>) -> Result<(), FetchError> {
        self.call("POST", url, Some(body)).await.map(|_| ())
    }

    /// The instance document of `domain`, checked: it names `domain` and its key id's
    /// authority is `domain`. Returns it with its parsed key.
    pub async fn instance(&self, domain: &str) -> Result<InstanceDoc, FetchError> {
        self.instance_key(domain).await.map(|(doc, _)| doc)
    }

    /// [`Client::instance`] and the key it holds.
    pub async fn instance_key(&self, domain: &str) -> Result<(InstanceDoc, PublicKey), FetchError> {
        if !plausible_domain(domain) {
            return Err(FetchError::Invalid(format!("{domain:?} is not a domain")));
        }
        let base = self.inner.scheme.base_url(domain);
        let doc: InstanceDoc = self.get_json(&format!("{base}{INSTANCE_PATH}")).await?;
        let key = doc.key_for(domain, &base)?;
        Ok((doc, key))
    }

    /// A signed GET of `url` whose answer is read as it arrives, once its status is a 2xx:
    /// for files from another instance. Blocking: call it off the async runtime
    /// (`spawn_blocking`). No overall time limit, [`STREAM_READ_TIMEOUT`] between reads.
    pub fn get_stream_blocking(
        &self,
        url: &str,
        accept: &str,
    ) -> Result<impl std::io::Read + Send + 'static, FetchError> {
        self.check_scheme(url)?;
        let inner = &self.inner;
        let headers = signature::sign(
            &inner.key,
            "GET",
            url,
            None,
            unix_now(),
            &signature::new_nonce(),
        )
        .map_err(|e| FetchError::Invalid(e.to_string()))?;
        let mut req = inner.agent.get(url).header("accept", accept);
        for (name, value) in headers.pairs() {
            req = req.header(name, value);
        }
        let response = req
            .config()
            .timeout_global(None)
            .timeout_recv_body(None)
            .timeout_per_read(Some(STREAM_READ_TIMEOUT))
            .build()
            .call()
            .map_err(transport)?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        if !(200..300).contains(&status) {
            let text = body
                .with_config()
                .limit(ERROR_TEXT_MAX as u64 * 4)
                .read_to_vec()
                .unwrap_or_default();
            return Err(FetchError::Status(status, error_text(&text)));
        }
        Ok(body.into_reader())
    }

    /// Refuses a URL of another scheme than the network's.
    fn check_scheme(&self, url: &str) -> Result<(), FetchError> {
        let scheme = self.inner.scheme;
        if !url.starts_with(scheme.prefix()) {
            return Err(FetchError::Invalid(format!(
                "{url}: peers are reached over {scheme} here (http:// only with --dev and no federation.dev_trusted_root)"
            )));
        }
        Ok(())
    }

    async fn call(
        &self,
        method: &'static str,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, FetchError> {
        self.check_scheme(url)?;
        let inner = self.inner.clone();
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || blocking_call(&inner, method, &url, body))
            .await
            .map_err(|e| FetchError::Transport(format!("the request task failed: {e}")))?
    }
}

fn blocking_call(
    inner: &Inner,
    method: &str,
    url: &str,
    body: Option<Vec<u8>>,
) -> Result<Vec<u8>, FetchError> {
    let headers = signature::sign(
        &inner.key,
        method,
        url,
        body.as_deref(),
        unix_now(),
        &signature::new_nonce(),
    )
    .map_err(|e| FetchError::Invalid(e.to_string()))?;
    let sent = match body {
        None => {
            let mut req = inner.agent.get(url).header("accept", "application/json");
            for (name, value) in headers.pairs() {
                req = req.header(name, value);
            }
            req.call()
        }
        Some(body) => {
            let mut req = inner
                .agent
                .post(url)
                .header("accept", "application/json")
                .header("content-type", "application/json");
            for (name, value) in headers.pairs() {
                req = req.header(name, value);
            }
            req.send(&body[..])
        }
    };
    let mut response = sent.map_err(transport)?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(RESPONSE_MAX_BYTES)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => FetchError::TooLarge,
            other => transport(other),
        })?;
    if !(200..300).contains(&status) {
        return Err(FetchError::Status(status, error_text(&body)));
    }
    Ok(body)
}

/// The start of an error answer's body, as kept in [`FetchError::Status`].
fn error_text(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .trim()
        .chars()
        .take(ERROR_TEXT_MAX)
        .collect()
}

fn transport(e: ureq::Error) -> FetchError {
    match e {
        ureq::Error::Other(inner) => match inner.downcast::<TargetError>() {
            Ok(refused) => FetchError::Forbidden(refused.to_string()),
            Err(other) => FetchError::Transport(other.to_string().to_lowercase()),
        },
        e => FetchError::Transport(e.to_string().to_lowercase()),
    }
}

/// The resolver of every outgoing request: ureq's own lookup (timeouts, address family),
/// then the SSRF check of every address; ureq connects only to the addresses returned.
#[derive(Debug)]
struct CheckedResolver {
    /// Dev mode: loopback and private addresses allowed.
    dev: bool,
}

impl Resolver for CheckedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let addresses = DefaultResolver::default().resolve(uri, config, timeout)?;
        let domain = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let ips: Vec<IpAddr> = addresses.iter().map(|a| a.ip()).collect();
        target::check_addresses(domain, &ips, self.dev)
            .map_err(|refused| ureq::Error::Other(Box::new(refused)))?;
        Ok(addresses)
    }
}

/// The CA certificates in a PEM file.
fn read_roots(path: &std::path::Path) -> anyhow::Result<Vec<ureq::tls::Certificate<'static>>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read federation.dev_trusted_root {}", path.display()))?;
    let mut roots = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(cert) = item
            .with_context(|| format!("federation.dev_trusted_root {} is not PEM", path.display()))?
        {
            roots.push(cert);
        }
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "federation.dev_trusted_root {} holds no certificate; give a PEM CA certificate",
        path.display()
    );
    Ok(roots)
}

/// Seconds since the epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(domain: &str, base: &str) -> (InstanceDoc, InstanceKey) {
        let key = InstanceKey::generate(base);
        (InstanceDoc::of(domain, &key), key)
    }

    #[test]
    fn an_instance_document_gives_its_key() {
        let (d, key) = doc("127.0.0.2:8080", "http://127.0.0.2:8080");
        assert_eq!(
            d.key_for("127.0.0.2:8080", "http://127.0.0.2:8080")
                .unwrap(),
            key.public_key()
        );
        assert_eq!(d.software, "rosewire");
    }

    #[test]
    fn an_instance_document_naming_another_domain_is_refused() {
        let (d, _) = doc("evil.example", "https://evil.example");
        let err = d
            .key_for("rose.example", "https://rose.example")
            .unwrap_err();
        assert!(err.to_string().contains("names \"evil.example\""), "{err}");
        // The right domain, but a key id of another instance.
        let (mut d, _) = doc("rose.example", "https://evil.example");
        assert!(d.key_for("rose.example", "https://rose.example").is_err());
        // The right key id, with a key that does not parse.
        d.key_id = key_id_for("https://rose.example");
        d.public_key_pem = "nope".into();
        assert!(d.key_for("rose.example", "https://rose.example").is_err());
    }

    #[tokio::test]
    async fn a_url_of_another_scheme_than_the_networks_is_refused() {
        let key = Arc::new(InstanceKey::generate("https://a.example"));
        let client = Client::new(key.clone(), Scheme::Https, false, None).unwrap();
        let err = client
            .post_json("http://127.0.0.1:9/x", vec![])
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Invalid(_)), "{err}");
        // A plain-http dev network does not speak https either: one network, one scheme.
        let client = Client::new(key, Scheme::Http, true, None).unwrap();
        let err = client
            .post_json("https://127.0.0.1:9/x", vec![])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("over http://"), "{err}");
    }

    #[tokio::test]
    async fn a_domain_that_could_change_the_url_is_refused() {
        let key = Arc::new(InstanceKey::generate("http://a.example"));
        let client = Client::new(key, Scheme::Http, true, None).unwrap();
        for bad in ["evil.example/x?", "user@evil.example", ""] {
            assert!(
                matches!(client.instance(bad).await, Err(FetchError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_trusted_root_needs_https_and_a_certificate() {
        let key = Arc::new(InstanceKey::generate("https://a.example"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = Client::new(key.clone(), Scheme::Http, true, Some(path.clone()))
            .err()
            .unwrap();
        assert!(err.to_string().contains("reached over http://"), "{err}");
        let err = Client::new(key, Scheme::Https, true, Some(path))
            .err()
            .unwrap();
        assert!(err.to_string().contains("holds no certificate"), "{err:#}");
    }

    fn client(dev: bool) -> Client {
        let base = if dev {
            "http://a.example"
        } else {
            "https://a.example"
        };
        let scheme = if dev { Scheme::Http } else { Scheme::Https };
        Client::new(Arc::new(InstanceKey::generate(base)), scheme, dev, None).unwrap()
    }

    /// `err` is the SSRF refusal, naming the domain and one of `addresses`.
    fn assert_forbidden(err: &FetchError, domain: &str, addresses: &[&str]) {
        let text = err.to_string();
        assert!(matches!(err, FetchError::Forbidden(_)), "{domain}: {err:?}");
        assert!(
            text.contains(&format!("peer {domain} ")),
            "{domain} named: {text}"
        );
        assert!(
            addresses.iter().any(|a| text.contains(a)),
            "{addresses:?} named: {text}"
        );
    }

    #[tokio::test]
    async fn every_request_to_a_loopback_or_private_address_is_refused_outside_dev_mode() {
        let client = client(false);
        // Plain http is refused before any lookup.
        let err = client
            .get_json::<serde_json::Value>("http://127.0.0.1:9/api/s2s/peers")
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Invalid(_)), "{err}");
        let cases: [(&str, &str, &[&str]); 5] = [
            ("https://10.0.0.1/api/s2s/peers", "10.0.0.1", &["10.0.0.1"]),
            (
                "https://127.0.0.1/api/s2s/catalog",
                "127.0.0.1",
                &["127.0.0.1"],
            ),
            (
                "https://192.168.1.1:8443/x",
                "192.168.1.1:8443",
                &["192.168.1.1"],
            ),
            ("https://[::1]/x", "[::1]", &["::1"]),
            // A name is resolved (here by /etc/hosts, no network) and its addresses checked.
            (
                "https://localhost/api/s2s/user/x",
                "localhost",
                &["127.0.0.1", "::1"],
            ),
        ];
        for (url, domain, addresses) in cases {
            let err = client.get_json::<serde_json::Value>(url).await.unwrap_err();
            assert_forbidden(&err, domain, addresses);
            let err = client.post_json(url, b"{}".to_vec()).await.unwrap_err();
            assert_forbidden(&err, domain, addresses);
        }
        // The first contact with an unknown signer (the verifier's key fetch) too.
        let err = client.instance("localhost").await.unwrap_err();
        assert_forbidden(&err, "localhost", &["127.0.0.1", "::1"]);
        let err = client.instance("10.1.2.3").await.unwrap_err();
        assert_forbidden(&err, "10.1.2.3", &["10.1.2.3"]);
        assert!(err.to_string().contains("private"), "{err}");
        assert!(!err.is_permanent(), "a name may resolve elsewhere later");
    }

    #[tokio::test]
    async fn dev_mode_still_refuses_addresses_no_peer_has() {
        let client = client(true);
        for (url, domain, address) in [
            ("http://0.0.0.0:9/x", "0.0.0.0:9", "0.0.0.0"),
            ("http://224.0.0.1:9/x", "224.0.0.1:9", "224.0.0.1"),
        ] {
            let err = client.get_json::<serde_json::Value>(url).await.unwrap_err();
            assert_forbidden(&err, domain, &[address]);
        }
    }

    /// A one-shot HTTP server on 127.0.0.1 answering every request with `body`; its address.
    fn serve_once(body: Vec<u8>) -> std::net::SocketAddr {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                let mut reader = std::io::BufReader::new(stream);
                let mut line = String::new();
                // The request head; the GET has no body.
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut stream = reader.into_inner();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        address
    }

    #[tokio::test]
    async fn an_answer_over_the_response_cap_is_refused() {
        let client = client(true);
        // A "peers" answer of 5 MiB: valid JSON, one long string.
        let mut body = br#"{"peers": [""#.to_vec();
        body.resize(5 * 1024 * 1024, b'a');
        body.extend_from_slice(br#""]}"#);
        assert!(body.len() as u64 > RESPONSE_MAX_BYTES);
        let address = serve_once(body);
        let err = client
            .get_json::<serde_json::Value>(&format!("http://{address}/api/s2s/peers"))
            .await
            .unwrap_err();
        assert_eq!(err, FetchError::TooLarge);
        // Under the cap the same server answers fine.
        let address = serve_once(br#"{"peers": ["b.example"]}"#.to_vec());
        let answer: serde_json::Value = client
            .get_json(&format!("http://{address}/api/s2s/peers"))
            .await
            .unwrap();
        assert_eq!(answer["peers"][0], "b.example");
    }
}
