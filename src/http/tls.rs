//! HTTPS on the HTTP endpoint: rustls (ring provider) with the certificate chain and key
//! read from PEM files, swapped in place on SIGHUP.
//!
//! **Invariant:** a reload never leaves the endpoint without a certificate. The new pair is
//! read and checked in full (parsed, key matching the leaf) before it replaces the old one;
//! if anything is wrong the old pair keeps serving and the error is logged.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why a certificate and key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a PEM certificate chain: {message}")]
    BadCertificate { path: PathBuf, message: String },
    #[error("{path} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {message}")]
    BadKey { path: PathBuf, message: String },
    #[error("the tls library refused its default protocol versions: {0}")]
    Protocols(rustls::Error),
    #[error("the key in {key} does not belong to the first certificate in {cert}: {message}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// The TLS side of the HTTP endpoint: an acceptor whose certificate can be reloaded.
/// Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    /// Where the PEM files are, the provider, and the pair in use.
    certs: Arc<ReloadingCert>,
    /// Built once on the resolver above, so a reload needs no new acceptor.
    acceptor: TlsAcceptor,
}

impl Tls {
    /// Reads `cert` and `key` once (an error names the file and what is wrong with it).
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let first = load_pair(cert, key, &provider)?;
        let certs = Arc::new(ReloadingCert {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            provider: provider.clone(),
            current: ArcSwap::from_pointee(first),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Protocols)?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        // We serve HTTP/1.1 only; saying so lets a client that offers h2 settle at once.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            certs,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// What the TLS configuration says, when one is set: `Ok(None)` for plain HTTP.
    pub fn from_config(http: &crate::config::HttpConfig) -> Result<Option<Tls>, TlsError> {
        match (&http.tls_cert, &http.tls_key) {
            (Some(cert), Some(key)) => Tls::load(cert, key).map(Some),
            // `Config::validate` refuses one without the other.
            _ => Ok(None),
        }
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reads both files again and, if they are good, serves them to every new handshake;
    /// otherwise keeps the pair in use. Blocking (file reads): call it off the async runtime.
    pub fn reload(&self) -> Result<(), TlsError> {
        let certs = &self.certs;
        let pair = load_pair(&certs.cert_path, &certs.key_path, &certs.provider)?;
        certs.current.store(Arc::new(pair));
        Ok(())
    }

    /// [`Tls::reload`] on a blocking thread, with the outcome logged.
    pub async fn reload_logged(&self) {
        let tls = self.clone();
        let cert = self.certs.cert_path.clone();
        match tokio::task::spawn_blocking(move || tls.reload()).await {
            Ok(Ok(())) => tracing::info!(cert = %cert.display(), "tls certificate reloaded"),
            Ok(Err(e)) => {
                tracing::error!("tls certificate not reloaded, the old one stays in use: {e}")
            }
            Err(e) => tracing::error!("tls certificate reload failed: {e}"),
        }
    }
}

/// Hands every handshake the pair loaded last.
struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    /// Parses private keys, the same provider the server config uses.
    provider: Arc<CryptoProvider>,
    /// Swapped whole by a reload; a handshake in progress keeps the pair it took.
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Reads a certificate chain and its private key and checks that they belong together.
fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert.to_owned(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key_pem = read(key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadKey {
        path: key.to_owned(),
        message: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `name` and its key, as PEM.
    fn self_signed(name: &str) -> (String, String) {
        let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    fn leaf(tls: &Tls) -> Vec<u8> {
        tls.certs.current.load().cert[0].to_vec()
    }

    #[test]
    fn a_reload_swaps_in_the_new_pair_and_a_bad_one_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let (c1, k1) = self_signed("one.example");
        std::fs::write(&cert, &c1).unwrap();
        std::fs::write(&key, &k1).unwrap();
        let tls = Tls::load(&cert, &key).unwrap();
        let first = leaf(&tls);

        let (c2, k2) = self_signed("two.example");
        std::fs::write(&cert, &c2).unwrap();
        std::fs::write(&key, &k2).unwrap();
        tls.reload().unwrap();
        let second = leaf(&tls);
        assert_ne!(first, second);

        // A new certificate with the old key: refused, the second pair stays.
        std::fs::write(&cert, &c1).unwrap();
        let err = tls.reload().unwrap_err().to_string();
        assert!(err.contains("does not belong"), "{err}");
        assert_eq!(leaf(&tls), second);
        std::fs::write(&cert, "not pem").unwrap();
        let err = tls.reload().unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
        assert_eq!(leaf(&tls), second);
    }

    #[test]
    fn loading_names_the_file_that_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let err = Tls::load(&cert, &key).err().unwrap().to_string();
        assert!(err.contains("cert.pem"), "{err}");
        let (c, _) = self_signed("one.example");
        std::fs::write(&cert, &c).unwrap();
        std::fs::write(&key, "-----BEGIN NOTHING-----\n").unwrap();
        let err = Tls::load(&cert, &key).err().unwrap().to_string();
        assert!(
            err.contains("key.pem") && err.contains("private key"),
            "{err}"
        );
    }
}
