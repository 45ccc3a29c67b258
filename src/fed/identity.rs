//! The instance's identity: its Ed25519 signing key, the key id peers name it by, and the
//! public keys of peers (SPKI PEM, as ActivityPub's `publicKeyPem`).

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// The path of the instance document; the key id is this URL with `#main-key`.
pub const INSTANCE_PATH: &str = "/api/s2s/instance";

/// The key id of the instance reached at `base_url`: `{base_url}/api/s2s/instance#main-key`.
pub fn key_id_for(base_url: &str) -> String {
    format!("{base_url}{INSTANCE_PATH}#main-key")
}

/// The domain a key id names: the authority of its URL (`host` or, in dev, `host:port`).
/// `None` unless the key id has the exact shape [`key_id_for`] gives.
pub fn key_id_domain(key_id: &str) -> Option<&str> {
    let rest = key_id
        .strip_prefix("https://")
        .or_else(|| key_id.strip_prefix("http://"))?;
    let (authority, path) = rest.split_once('/')?;
    (plausible_domain(authority) && format!("/{path}") == format!("{INSTANCE_PATH}#main-key"))
        .then_some(authority)
}

/// Whether `domain` is safe to put in a URL as its authority: letters, digits, `-`, `.` and
/// `:` (a dev port), nothing that could add a path, a query or credentials.
pub fn plausible_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 255
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'))
}

/// This instance's signing key and the key id peers know it by.
pub struct InstanceKey {
    /// The private key: only ever used to sign.
    signing: SigningKey,
    /// `{base_url}/api/s2s/instance#main-key`.
    key_id: String,
}

impl InstanceKey {
    /// The instance key from the Ed25519 key file (`keys::load_or_create`), named for the
    /// instance reached at `base_url`.
    pub fn new(key: &russh::keys::PrivateKey, base_url: &str) -> anyhow::Result<InstanceKey> {
        let pair = key.key_data().ed25519().ok_or_else(|| {
            anyhow::anyhow!("the instance key is not an ed25519 key; remove it to make a new one")
        })?;
        Ok(InstanceKey::from_seed(pair.private.to_bytes(), base_url))
    }

    /// The instance key with this 32-byte Ed25519 seed (tests, tools).
    pub fn from_seed(seed: [u8; 32], base_url: &str) -> InstanceKey {
        InstanceKey {
            signing: SigningKey::from_bytes(&seed),
            key_id: key_id_for(base_url),
        }
    }

    /// A fresh random key (tests).
    pub fn generate(base_url: &str) -> InstanceKey {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        InstanceKey::from_seed(seed, base_url)
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_key_pem(&self) -> String {
        self.public_key().to_pem()
    }

    /// The Ed25519 signature (RFC 8032, no prehash) of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }
}

/// A peer's (or our own) Ed25519 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

/// Why a public key was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the public key is not an ed25519 spki pem: {0}")]
    Pem(String),
}

impl PublicKey {
    /// Parses an SPKI PEM (`-----BEGIN PUBLIC KEY-----`) Ed25519 key.
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(PublicKey)
            .map_err(|e| KeyError::Pem(e.to_string().to_lowercase()))
    }

    /// The 32 raw bytes of a key (RFC 8032).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, KeyError> {
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|e| KeyError::Pem(e.to_string().to_lowercase()))
    }

    /// Whether `signature` is this key's Ed25519 signature of `message` (strict: no
    /// malleable signatures, no weak keys).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        self.0
            .verify_strict(message, &Signature::from_bytes(&bytes))
            .is_ok()
    }

    /// SPKI PEM, LF line endings.
    pub fn to_pem(&self) -> String {
        // Encoding 32 bytes into a fixed SPKI structure cannot fail.
        self.0.to_public_key_pem(LineEnding::LF).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9421 appendix B.1.4, test-key-ed25519, public half.
    pub(crate) const RFC_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n\
        -----END PUBLIC KEY-----\n";

    #[test]
    fn the_public_key_pem_round_trips() {
        let key = InstanceKey::generate("http://127.0.0.2:8080");
        let pem = key.public_key_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert_eq!(PublicKey::from_pem(&pem).unwrap(), key.public_key());
    }

    #[test]
    fn the_rfc_test_key_parses_and_prints_back_the_same() {
        let key = PublicKey::from_pem(RFC_PUBLIC_PEM).unwrap();
        assert_eq!(key.to_pem(), RFC_PUBLIC_PEM);
    }

    #[test]
    fn a_garbage_pem_is_refused() {
        assert!(PublicKey::from_pem(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
        )
        .is_err());
        assert!(PublicKey::from_pem("").is_err());
    }

    #[test]
    fn a_signature_verifies_only_for_its_message_and_key() {
        let key = InstanceKey::generate("https://a.example");
        let other = InstanceKey::generate("https://b.example");
        let sig = key.sign(b"hello");
        assert!(key.public_key().verify(b"hello", &sig));
        assert!(!key.public_key().verify(b"hellp", &sig));
        assert!(!other.public_key().verify(b"hello", &sig));
        assert!(!key.public_key().verify(b"hello", &sig[..63]));
    }

    #[test]
    fn the_key_id_names_the_instance_document_and_its_domain() {
        let key = InstanceKey::generate("http://127.0.0.2:8080");
        assert_eq!(
            key.key_id(),
            "http://127.0.0.2:8080/api/s2s/instance#main-key"
        );
        assert_eq!(key_id_domain(key.key_id()), Some("127.0.0.2:8080"));
        assert_eq!(
            key_id_domain("https://rose.example/api/s2s/instance#main-key"),
            Some("rose.example")
        );
        for bad in [
            "https://rose.example/other#main-key",
            "https://rose.example/api/s2s/instance",
            "ftp://rose.example/api/s2s/instance#main-key",
            "https:///api/s2s/instance#main-key",
            "https://us@rose.example/api/s2s/instance#main-key",
            "rose.example",
        ] {
            assert_eq!(key_id_domain(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_instance_key_comes_from_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instance_key");
        let (file_key, _) = crate::keys::load_or_create(&path, "test").unwrap();
        let a = InstanceKey::new(&file_key, "https://a.example").unwrap();
        let (again, created) = crate::keys::load_or_create(&path, "test").unwrap();
        assert!(!created);
        let b = InstanceKey::new(&again, "https://a.example").unwrap();
        assert_eq!(a.public_key(), b.public_key());
    }
}
