//! RFC 9421 HTTP Message Signatures in the one profile RoseWire speaks, and RFC 9530
//! `Content-Digest` (`sha-256`).
//!
//! The profile: label `sig1`; covered components `("@method" "@target-uri")`, plus
//! `"content-digest"` when the request has a body; parameters `created`, `keyid`, `nonce`,
//! `alg="ed25519"`. `@target-uri` is the URL the request was sent to, which the receiver
//! rebuilds from its own base URL (never from `Host`). Sans-IO: the clock is passed in.
//!
//! Checking is in two steps so that a caller can find the key first: [`check`] parses strictly
//! and checks form, time and digest; [`Checked::verify`] checks the signature with a key.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sfv::{BareItem, Dictionary, InnerList, Item, Key, KeyRef, ListEntry, Parameters, Parser};
use sha2::{Digest, Sha256};

use super::identity::{InstanceKey, PublicKey};

/// The label of our signature in `Signature-Input` and `Signature`.
pub const LABEL: &str = "sig1";
/// The only algorithm we sign with and accept.
pub const ALG: &str = "ed25519";
/// How far, in seconds, `created` may be from our clock in either direction.
pub const CREATED_WINDOW_SECS: i64 = 300;
/// Random bytes in a nonce (base64 on the wire: 24 characters).
pub const NONCE_BYTES: usize = 16;
/// The longest nonce accepted, in bytes: bounds what the replay cache keeps per entry.
pub const NONCE_MAX_LEN: usize = 64;
/// The longest `Signature-Input`, `Signature` or `Content-Digest` value parsed, in bytes.
pub const FIELD_MAX_LEN: usize = 4096;

/// The components we know how to rebuild.
const METHOD: &str = "@method";
const TARGET_URI: &str = "@target-uri";
const CONTENT_DIGEST: &str = "content-digest";

/// Why a signed request was refused. The text is the short reason the 401 carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("malformed {0} header")]
    Malformed(&'static str),
    #[error("no {LABEL} signature")]
    NoLabel,
    #[error("unsupported component {0}")]
    UnsupportedComponent(String),
    #[error("signature does not cover {0}")]
    MissingComponent(&'static str),
    #[error("signature has no valid {0} parameter")]
    MissingParam(&'static str),
    #[error("unknown signature parameter {0}")]
    UnknownParam(String),
    #[error("unsupported alg {0:?}, expected {ALG:?}")]
    WrongAlg(String),
    #[error("content-digest does not match the body")]
    DigestMismatch,
    #[error("signature expired")]
    Expired,
    #[error("signature created in the future")]
    Future,
    #[error("bad signature")]
    BadSignature,
    /// A key id or nonce that is not a structured-field string (printable ASCII).
    #[error("cannot sign {0:?}: not printable ascii")]
    Unsignable(String),
}

/// The headers a signed request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub signature_input: String,
    pub signature: String,
    /// Set when the request has a body.
    pub content_digest: Option<String>,
}

impl SignatureHeaders {
    /// `(header name, value)` pairs to add to the request.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut pairs = vec![
            ("signature-input", self.signature_input.as_str()),
            ("signature", self.signature.as_str()),
        ];
        if let Some(digest) = &self.content_digest {
            pairs.push(("content-digest", digest.as_str()));
        }
        pairs
    }
}

/// A fresh nonce: [`NONCE_BYTES`] random bytes, base64.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; NONCE_BYTES];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    BASE64.encode(bytes)
}

/// The RFC 9530 `Content-Digest` value of `body`: `sha-256=:BASE64:`.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", BASE64.encode(Sha256::digest(body)))
}

/// Signs a request in our profile. `body` is `Some` for requests with a body (then
/// `content-digest` is covered and returned), `created` is unix seconds.
pub fn sign(
    key: &InstanceKey,
    method: &str,
    target_uri: &str,
    body: Option<&[u8]>,
    created: i64,
    nonce: &str,
) -> Result<SignatureHeaders, SigError> {
    let digest = body.map(content_digest);
    let mut lines = vec![(METHOD, method), (TARGET_URI, target_uri)];
    if let Some(d) = &digest {
        lines.push((CONTENT_DIGEST, d.as_str()));
    }
    let mut params = Parameters::new();
    params.insert(key_of(CREATED), integer(created)?);
    params.insert(key_of(KEYID), string(key.key_id())?);
    params.insert(key_of(NONCE), string(nonce)?);
    params.insert(key_of(ALG_PARAM), string(ALG)?);
    let (input, base) = signature_base(&lines, params)?;
    let signature = key.sign(base.as_bytes());
    Ok(SignatureHeaders {
        signature_input: format!("{LABEL}={input}"),
        signature: format!("{LABEL}=:{}:", BASE64.encode(signature)),
        content_digest: digest,
    })
}

/// The serialized inner list of covered components with `params` (the value of
/// `Signature-Input` and of `@signature-params`), and the signature base (RFC 9421 2.5)
/// for the component `lines` (identifier, value).
pub fn signature_base(
    lines: &[(&str, &str)],
    params: Parameters,
) -> Result<(String, String), SigError> {
    let items = lines
        .iter()
        .map(|(name, _)| string(name).map(Item::new))
        .collect::<Result<Vec<_>, _>>()?;
    let input = serialize_inner_list(&InnerList::with_params(items, params));
    let mut base = String::new();
    for (name, value) in lines {
        base.push_str(&format!("\"{name}\": {value}\n"));
    }
    base.push_str(&format!("\"@signature-params\": {input}"));
    Ok((input, base))
}

fn serialize_inner_list(list: &InnerList) -> String {
    let mut ser = sfv::ListSerializer::new();
    ser.members([&ListEntry::InnerList(list.clone())]);
    ser.finish().unwrap_or_default()
}

/// Our parameter names, checked when compiled.
const CREATED: &KeyRef = KeyRef::constant("created");
const KEYID: &KeyRef = KeyRef::constant("keyid");
const NONCE: &KeyRef = KeyRef::constant("nonce");
const ALG_PARAM: &KeyRef = KeyRef::constant("alg");

fn key_of(name: &KeyRef) -> Key {
    name.to_owned()
}

fn string(s: &str) -> Result<BareItem, SigError> {
    sfv::String::from_string(s.to_owned())
        .map(BareItem::String)
        .map_err(|_| SigError::Unsignable(s.to_owned()))
}

fn integer(n: i64) -> Result<BareItem, SigError> {
    sfv::Integer::try_from(n)
        .map(BareItem::Integer)
        .map_err(|_| SigError::MissingParam("created"))
}

/// What a received request carries that the signature check needs. Header values that
/// appear more than once are joined with `", "`.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub method: &'a str,
    /// Rebuilt from the receiver's own base URL and the request's path and query.
    pub target_uri: &'a str,
    pub signature_input: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub content_digest: Option<&'a str>,
    pub body: &'a [u8],
}

/// A signature whose form, parameters, digest and time are good; its key not yet checked.
#[derive(Debug, Clone)]
pub struct Checked {
    pub key_id: String,
    pub nonce: String,
    pub created: i64,
    /// The signature base, rebuilt from the request.
    base: Vec<u8>,
    /// The signature bytes from `Signature`.
    signature: Vec<u8>,
}

impl Checked {
    /// Whether the signature is `key`'s over the rebuilt signature base.
    pub fn verify(&self, key: &PublicKey) -> bool {
        key.verify(&self.base, &self.signature)
    }

    /// The signature base (for logs and documentation).
    pub fn base(&self) -> &[u8] {
        &self.base
    }
}

/// Parses and checks a request's signature in our profile at time `now` (unix seconds):
/// every check but the key's.
pub fn check(req: &Incoming, now: i64) -> Result<Checked, SigError> {
    let input_field = field(req.signature_input, "signature-input")?;
    let signature_field = field(req.signature, "signature")?;
    let inputs = parse_dictionary(input_field, "signature-input")?;
    let signatures = parse_dictionary(signature_field, "signature")?;
    let Some(ListEntry::InnerList(covered)) = inputs.get(LABEL) else {
        return Err(match inputs.get(LABEL) {
            None => SigError::NoLabel,
            Some(_) => SigError::Malformed("signature-input"),
        });
    };
    let signature = match signatures.get(LABEL) {
        Some(ListEntry::Item(Item {
            bare_item: BareItem::ByteSequence(bytes),
            ..
        })) => bytes.clone(),
        Some(_) => return Err(SigError::Malformed("signature")),
        None => return Err(SigError::NoLabel),
    };
    let params = check_params(&covered.params, now)?;
    let lines = component_values(&covered.items, req)?;
    let input = serialize_inner_list(covered);
    let mut base = String::new();
    for (name, value) in &lines {
        base.push_str(&format!("\"{name}\": {value}\n"));
    }
    base.push_str(&format!("\"@signature-params\": {input}"));
    Ok(Checked {
        key_id: params.key_id,
        nonce: params.nonce,
        created: params.created,
        base: base.into_bytes(),
        signature,
    })
}

fn field<'a>(value: Option<&'a str>, name: &'static str) -> Result<&'a str, SigError> {
    match value {
        None => Err(SigError::MissingHeader(name)),
        Some(v) if v.len() > FIELD_MAX_LEN => Err(SigError::Malformed(name)),
        Some(v) => Ok(v),
    }
}

fn parse_dictionary(value: &str, name: &'static str) -> Result<Dictionary, SigError> {
    Parser::new(value)
        .parse::<Dictionary>()
        .map_err(|_| SigError::Malformed(name))
}

struct Params {
    key_id: String,
    nonce: String,
    created: i64,
}

/// Every parameter we require, with its type; `expires` is honoured and `tag` ignored;
/// anything else is refused.
fn check_params(params: &Parameters, now: i64) -> Result<Params, SigError> {
    let (mut created, mut key_id, mut nonce, mut alg) = (None, None, None, None);
    for (name, value) in params {
        match (name.as_str(), value) {
            ("created", BareItem::Integer(n)) => created = Some(i64::from(*n)),
            ("keyid", BareItem::String(s)) => key_id = Some(s.as_str().to_owned()),
            ("nonce", BareItem::String(s)) => nonce = Some(s.as_str().to_owned()),
            ("alg", BareItem::String(s)) => alg = Some(s.as_str().to_owned()),
            ("expires", BareItem::Integer(n)) => {
                if i64::from(*n) < now {
                    return Err(SigError::Expired);
                }
            }
            ("tag", BareItem::String(_)) => {}
            ("created", _) => return Err(SigError::MissingParam("created")),
            ("keyid", _) => return Err(SigError::MissingParam("keyid")),
            ("nonce", _) => return Err(SigError::MissingParam("nonce")),
            ("alg", _) => return Err(SigError::MissingParam("alg")),
            (other, _) => return Err(SigError::UnknownParam(other.to_owned())),
        }
    }
    let alg = alg.ok_or(SigError::MissingParam("alg"))?;
    if alg != ALG {
        return Err(SigError::WrongAlg(alg));
    }
    let created = created.ok_or(SigError::MissingParam("created"))?;
    let key_id = key_id
        .filter(|k| !k.is_empty())
        .ok_or(SigError::MissingParam("keyid"))?;
    let nonce = nonce
        .filter(|n| !n.is_empty() && n.len() <= NONCE_MAX_LEN)
        .ok_or(SigError::MissingParam("nonce"))?;
    if created < now.saturating_sub(CREATED_WINDOW_SECS) {
        return Err(SigError::Expired);
    }
    if created > now.saturating_add(CREATED_WINDOW_SECS) {
        return Err(SigError::Future);
    }
    Ok(Params {
        key_id,
        nonce,
        created,
    })
}

/// The value of each covered component, in the order covered. Only our profile's components
/// are known; each at most once, without parameters.
fn component_values<'a>(
    items: &'a [Item],
    req: &Incoming<'a>,
) -> Result<Vec<(&'a str, &'a str)>, SigError> {
    let mut lines: Vec<(&str, &str)> = Vec::with_capacity(items.len());
    for item in items {
        let BareItem::String(name) = &item.bare_item else {
            return Err(SigError::Malformed("signature-input"));
        };
        let name = name.as_str();
        if !item.params.is_empty() || lines.iter().any(|(seen, _)| *seen == name) {
            return Err(SigError::UnsupportedComponent(name.to_owned()));
        }
        let value = match name {
            METHOD => req.method,
            TARGET_URI => req.target_uri,
            CONTENT_DIGEST => {
                let header = field(req.content_digest, "content-digest")?;
                check_digest(header, req.body)?;
                header.trim()
            }
            other => return Err(SigError::UnsupportedComponent(other.to_owned())),
        };
        lines.push((name, value));
    }
    let covers = |c: &str| lines.iter().any(|(name, _)| *name == c);
    if !covers(METHOD) {
        return Err(SigError::MissingComponent(METHOD));
    }
    if !covers(TARGET_URI) {
        return Err(SigError::MissingComponent(TARGET_URI));
    }
    if !req.body.is_empty() && !covers(CONTENT_DIGEST) {
        return Err(SigError::MissingComponent(CONTENT_DIGEST));
    }
    Ok(lines)
}

/// The `sha-256` member of a `Content-Digest` must be the body's SHA-256; other algorithms
/// are ignored, and one of them alone is not enough.
fn check_digest(header: &str, body: &[u8]) -> Result<(), SigError> {
    let digests = parse_dictionary(header, "content-digest")?;
    match digests.get("sha-256") {
        Some(ListEntry::Item(Item {
            bare_item: BareItem::ByteSequence(bytes),
            ..
        })) if bytes.as_slice() == Sha256::digest(body).as_slice() => Ok(()),
        Some(ListEntry::Item(Item {
            bare_item: BareItem::ByteSequence(_),
            ..
        })) => Err(SigError::DigestMismatch),
        _ => Err(SigError::Malformed("content-digest")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::DecodePrivateKey;

    /// RFC 9421 appendix B.1.4: test-key-ed25519.
    const RFC_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n\
        -----END PRIVATE KEY-----\n";
    const RFC_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n\
        -----END PUBLIC KEY-----\n";

    const NOW: i64 = 1_700_000_000;
    const TARGET: &str = "https://b.example/api/s2s/inbox";

    fn rfc_key() -> InstanceKey {
        let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(RFC_PRIVATE_PEM).unwrap();
        InstanceKey::from_seed(signing.to_bytes(), "https://example.com")
    }

    /// RFC 9421 appendix B.2.6, "Signing a Request Using ed25519": the same signature base,
    /// the same Signature-Input, and (Ed25519 being deterministic) the same signature bytes.
    #[test]
    fn rfc_9421_b_2_6_test_vector() {
        let lines = [
            ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
            ("@method", "POST"),
            ("@path", "/foo"),
            ("@authority", "example.com"),
            ("content-type", "application/json"),
            ("content-length", "18"),
        ];
        let mut params = Parameters::new();
        params.insert(key_of(CREATED), integer(1618884473).unwrap());
        params.insert(key_of(KEYID), string("test-key-ed25519").unwrap());
        let (input, base) = signature_base(&lines, params).unwrap();
        assert_eq!(
            input,
            "(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \
             \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
        );
        assert_eq!(
            base,
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
             \"@method\": POST\n\
             \"@path\": /foo\n\
             \"@authority\": example.com\n\
             \"content-type\": application/json\n\
             \"content-length\": 18\n\
             \"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \
             \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
        );
        let key = rfc_key();
        let signature = key.sign(base.as_bytes());
        assert_eq!(
            BASE64.encode(signature),
            "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw=="
        );
        let public = PublicKey::from_pem(RFC_PUBLIC_PEM).unwrap();
        assert_eq!(key.public_key(), public);
        assert!(public.verify(base.as_bytes(), &signature));
    }

    /// RFC 9530 appendix B.1 example body `{"hello": "world"}` (with its newline? no: the
    /// RFC's sha-256 example is over `{"hello": "world"}\n`).
    #[test]
    fn content_digest_matches_rfc_9530() {
        assert_eq!(
            content_digest(b"{\"hello\": \"world\"}\n"),
            "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
        );
    }

    fn signed(body: Option<&[u8]>, created: i64) -> (InstanceKey, SignatureHeaders) {
        let key = InstanceKey::generate("https://a.example");
        let method = if body.is_some() { "POST" } else { "GET" };
        let headers = sign(&key, method, TARGET, body, created, "bm9uY2Vub25jZW5vbmNl").unwrap();
        (key, headers)
    }

    fn incoming<'a>(h: &'a SignatureHeaders, method: &'a str, body: &'a [u8]) -> Incoming<'a> {
        Incoming {
            method,
            target_uri: TARGET,
            signature_input: Some(&h.signature_input),
            signature: Some(&h.signature),
            content_digest: h.content_digest.as_deref(),
            body,
        }
    }

    fn check_ok(req: &Incoming, key: &InstanceKey) {
        let checked = check(req, NOW).unwrap();
        assert!(checked.verify(&key.public_key()));
        assert_eq!(checked.key_id, key.key_id());
    }

    #[test]
    fn a_signed_post_verifies() {
        let body = b"{\"a\":1}";
        let (key, h) = signed(Some(body), NOW);
        assert!(h.signature_input.starts_with(
            "sig1=(\"@method\" \"@target-uri\" \"content-digest\");created=1700000000;keyid=\"https://a.example/api/s2s/instance#main-key\";nonce="
        ), "{}", h.signature_input);
        assert!(h.signature_input.ends_with(";alg=\"ed25519\""));
        check_ok(&incoming(&h, "POST", body), &key);
    }

    #[test]
    fn a_signed_get_verifies_without_a_digest() {
        let (key, h) = signed(None, NOW);
        assert_eq!(h.content_digest, None);
        check_ok(&incoming(&h, "GET", b""), &key);
    }

    #[test]
    fn missing_headers_are_refused() {
        let (_, h) = signed(Some(b"x"), NOW);
        let mut req = incoming(&h, "POST", b"x");
        req.signature = None;
        assert_eq!(
            check(&req, NOW).unwrap_err(),
            SigError::MissingHeader("signature")
        );
        let mut req = incoming(&h, "POST", b"x");
        req.signature_input = None;
        assert_eq!(
            check(&req, NOW).unwrap_err(),
            SigError::MissingHeader("signature-input")
        );
        let mut req = incoming(&h, "POST", b"x");
        req.content_digest = None;
        assert_eq!(
            check(&req, NOW).unwrap_err(),
            SigError::MissingHeader("content-digest")
        );
    }

    #[test]
    fn a_bad_signature_is_refused() {
        let (key, h) = signed(None, NOW);
        let other = InstanceKey::generate("https://a.example");
        let checked = check(&incoming(&h, "GET", b""), NOW).unwrap();
        assert!(!checked.verify(&other.public_key()));
        // A flipped bit in the signature itself.
        let mut sig = BASE64
            .decode(&h.signature["sig1=:".len()..h.signature.len() - 1])
            .unwrap();
        sig[10] ^= 1;
        let forged = format!("sig1=:{}:", BASE64.encode(sig));
        let mut req = incoming(&h, "GET", b"");
        req.signature = Some(&forged);
        assert!(!check(&req, NOW).unwrap().verify(&key.public_key()));
    }

    #[test]
    fn a_tampered_body_is_refused() {
        let (_, h) = signed(Some(b"{\"text\":\"hi\"}"), NOW);
        let req = incoming(&h, "POST", b"{\"text\":\"HI\"}");
        assert_eq!(check(&req, NOW).unwrap_err(), SigError::DigestMismatch);
    }

    #[test]
    fn a_body_with_a_matching_new_digest_is_still_refused() {
        // The forger recomputes Content-Digest: the signature covers the old one.
        let (key, h) = signed(Some(b"old"), NOW);
        let digest = content_digest(b"new");
        let mut req = incoming(&h, "POST", b"new");
        req.content_digest = Some(&digest);
        assert!(!check(&req, NOW).unwrap().verify(&key.public_key()));
    }

    #[test]
    fn a_tampered_method_or_uri_is_refused() {
        let (key, h) = signed(None, NOW);
        let req = incoming(&h, "DELETE", b"");
        assert!(!check(&req, NOW).unwrap().verify(&key.public_key()));
        let mut req = incoming(&h, "GET", b"");
        req.target_uri = "https://b.example/api/s2s/peers";
        assert!(!check(&req, NOW).unwrap().verify(&key.public_key()));
    }

    #[test]
    fn an_expired_or_future_signature_is_refused() {
        let (_, old) = signed(None, NOW - CREATED_WINDOW_SECS - 1);
        assert_eq!(
            check(&incoming(&old, "GET", b""), NOW).unwrap_err(),
            SigError::Expired
        );
        let (_, edge) = signed(None, NOW - CREATED_WINDOW_SECS);
        assert!(check(&incoming(&edge, "GET", b""), NOW).is_ok());
        let (_, future) = signed(None, NOW + CREATED_WINDOW_SECS + 1);
        assert_eq!(
            check(&incoming(&future, "GET", b""), NOW).unwrap_err(),
            SigError::Future
        );
    }

    fn with_input(input: &str, sig: &SignatureHeaders, body: &[u8]) -> Result<Checked, SigError> {
        let mut req = incoming(sig, if body.is_empty() { "GET" } else { "POST" }, body);
        req.signature_input = Some(input);
        check(&req, NOW)
    }

    #[test]
    fn a_wrong_alg_is_refused() {
        let (_, h) = signed(None, NOW);
        let input = h
            .signature_input
            .replace("alg=\"ed25519\"", "alg=\"rsa-v1_5-sha256\"");
        assert_eq!(
            with_input(&input, &h, b"").unwrap_err(),
            SigError::WrongAlg("rsa-v1_5-sha256".into())
        );
        let input = h.signature_input.replace(";alg=\"ed25519\"", "");
        assert_eq!(
            with_input(&input, &h, b"").unwrap_err(),
            SigError::MissingParam("alg")
        );
    }

    #[test]
    fn a_missing_component_is_refused() {
        let (_, h) = signed(None, NOW);
        let input = h.signature_input.replace(" \"@target-uri\"", "");
        assert_eq!(
            with_input(&input, &h, b"").unwrap_err(),
            SigError::MissingComponent("@target-uri")
        );
        let input = h.signature_input.replace("\"@method\" ", "");
        assert_eq!(
            with_input(&input, &h, b"").unwrap_err(),
            SigError::MissingComponent("@method")
        );
        // A body the signature does not cover.
        let input = h.signature_input.clone();
        assert_eq!(
            with_input(&input, &h, b"body").unwrap_err(),
            SigError::MissingComponent("content-digest")
        );
    }

    #[test]
    fn missing_params_and_unknown_components_are_refused() {
        let (_, h) = signed(None, NOW);
        for (from, to, err) in [
            (";nonce=", ";x=", SigError::UnknownParam("x".into())),
            (
                "created=",
                "created2=",
                SigError::UnknownParam("created2".into()),
            ),
            (
                "\"@method\"",
                "\"@method\";req",
                SigError::UnsupportedComponent("@method".into()),
            ),
            (
                "\"@method\"",
                "\"@path\"",
                SigError::UnsupportedComponent("@path".into()),
            ),
            (
                "\"@method\"",
                "\"@target-uri\"",
                SigError::UnsupportedComponent("@target-uri".into()),
            ),
            ("sig1=", "sig2=", SigError::NoLabel),
            ("(", "", SigError::Malformed("signature-input")),
        ] {
            let input = h.signature_input.replacen(from, to, 1);
            assert_eq!(with_input(&input, &h, b"").unwrap_err(), err, "{input}");
        }
        let input = h
            .signature_input
            .replacen("created=1700000000", "created=\"1700000000\"", 1);
        assert_eq!(
            with_input(&input, &h, b"").unwrap_err(),
            SigError::MissingParam("created")
        );
        let long = "n".repeat(NONCE_MAX_LEN + 1);
        let input = h
            .signature_input
            .replacen("nonce=\"", &format!("nonce=\"{long}"), 1);
        assert_eq!(
            with_input(&input, &h, b"").unwrap_err(),
            SigError::MissingParam("nonce")
        );
    }

    #[test]
    fn an_oversized_header_is_refused_before_parsing() {
        let (_, h) = signed(None, NOW);
        let input = format!("{}, {}", h.signature_input, "x=1, ".repeat(FIELD_MAX_LEN));
        assert_eq!(
            with_input(&input, &h, b"").unwrap_err(),
            SigError::Malformed("signature-input")
        );
    }

    #[test]
    fn other_labels_beside_ours_are_ignored() {
        let (key, h) = signed(None, NOW);
        let input = format!("other=(\"@method\");created=1, {}", h.signature_input);
        let signature = format!("other=:AAAA:, {}", h.signature);
        let mut req = incoming(&h, "GET", b"");
        req.signature_input = Some(&input);
        req.signature = Some(&signature);
        check_ok(&req, &key);
    }
}

#[cfg(test)]
mod worked_example {
    //! The worked example of docs/PROTOCOL.md (section 3), checked: run with `--nocapture` to
    //! print it.
    use super::*;
    use ed25519_dalek::pkcs8::DecodePrivateKey;

    #[test]
    fn the_documented_worked_example_holds() {
        let pem = "-----BEGIN PRIVATE KEY-----\n\
            MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n\
            -----END PRIVATE KEY-----\n";
        let seed = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .unwrap()
            .to_bytes();
        let key = InstanceKey::from_seed(seed, "https://a.example");
        let body = br#"{"hello":"world"}"#;
        let nonce = BASE64.encode((0u8..16).collect::<Vec<u8>>());
        let target = "https://b.example/api/s2s/inbox";
        let h = sign(&key, "POST", target, Some(body), 1_700_000_000, &nonce).unwrap();
        let checked = check(
            &Incoming {
                method: "POST",
                target_uri: target,
                signature_input: Some(&h.signature_input),
                signature: Some(&h.signature),
                content_digest: h.content_digest.as_deref(),
                body,
            },
            1_700_000_010,
        )
        .unwrap();
        assert!(checked.verify(&key.public_key()));
        let base = String::from_utf8(checked.base().to_vec()).unwrap();
        println!("public key:\n{}", key.public_key_pem());
        println!(
            "Content-Digest: {}",
            h.content_digest.as_deref().unwrap_or("")
        );
        println!("Signature-Input: {}", h.signature_input);
        println!("Signature: {}", h.signature);
        println!("base:\n{base}");
        assert_eq!(
            h.content_digest.as_deref(),
            Some("sha-256=:k6I5cakU5erL8KjSUVTNownDwccvu5kU1Hxg88toFYg=:")
        );
        assert_eq!(
            h.signature_input,
            "sig1=(\"@method\" \"@target-uri\" \"content-digest\");created=1700000000;\
             keyid=\"https://a.example/api/s2s/instance#main-key\";\
             nonce=\"AAECAwQFBgcICQoLDA0ODw==\";alg=\"ed25519\""
        );
        assert_eq!(
            h.signature,
            "sig1=:0b7drfyMZEEdPr7qRJ9TbInkc7g5VWWzTcLV65nK0u/vq+RipuA/Mpbn1atihoTdLn8w1XjrUoV+b6ZZdhRwDA==:"
        );
        assert_eq!(
            base,
            "\"@method\": POST\n\
             \"@target-uri\": https://b.example/api/s2s/inbox\n\
             \"content-digest\": sha-256=:k6I5cakU5erL8KjSUVTNownDwccvu5kU1Hxg88toFYg=:\n\
             \"@signature-params\": (\"@method\" \"@target-uri\" \"content-digest\");\
             created=1700000000;keyid=\"https://a.example/api/s2s/instance#main-key\";\
             nonce=\"AAECAwQFBgcICQoLDA0ODw==\";alg=\"ed25519\""
        );
    }
}
