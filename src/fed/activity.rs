//! Activities: what one instance tells others (a chat line, an action, a share, an unshare, a
//! profile update), and the envelope that carries each one to an inbox.
//!
//! An activity is signed by its origin instance *itself*, apart from the HTTP request that
//! carries it: the envelope's `proof` is an Ed25519 signature over the activity's canonical
//! JSON (RFC 8785, JCS). Whoever holds an envelope can check it against the origin's key, so
//! an activity stays verifiable when another instance forwards it.
//!
//! This module is pure: parsing, bounds, canonical bytes. Keys come in as closures.

use std::fmt::Write as _;

use base64::Engine as _;
use rosewire_shell::Address;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Scheme;

/// Files listed in one share or unshare activity; a larger share travels as several.
pub const MAX_FILES_PER_ACTIVITY: usize = 100;
/// Longest activity id, in bytes.
pub const MAX_ID_BYTES: usize = 512;
/// Longest text of a chat line or action, in bytes (the local chat's bound).
pub const MAX_TEXT_BYTES: usize = crate::chat::MAX_LINE_BYTES;
/// Longest bio in a profile update, in bytes: the local bound, 4 bytes a character.
pub const MAX_BIO_BYTES: usize = 4 * crate::profile::MAX_BIO_CHARS;
/// Longest text of a private message on the wire, in bytes: the protocol's bound. Each
/// instance takes at most its own `messages.max_text_bytes` / `max_sealed_bytes`.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest file name or path in a share, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// The path under an instance's base URL where its activity ids live.
pub const ID_PATH: &str = "/api/s2s/activities/";

/// What an activity says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A chat line.
    Say { text: String },
    /// An action (`/me waves`).
    Action { text: String },
    /// Files the actor offers to the network.
    Share { files: Vec<SharedFile> },
    /// Files the actor no longer offers.
    Unshare { files: Vec<UnsharedFile> },
    /// The actor's public profile changed.
    Profile { bio: String },
    /// A private message to `to`, a user of the receiving instance; posted to that instance
    /// alone. `sealed`: the text is age armor the instances cannot read.
    Message {
        to: Address,
        text: String,
        sealed: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedFile {
    /// The BLAKE3 of the content, 64 lowercase hex digits: the network-wide file id.
    pub id: String,
    pub name: String,
    pub path: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsharedFile {
    pub id: String,
    pub path: String,
}

impl Payload {
    /// The `type` member on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::Say { .. } => "Say",
            Payload::Action { .. } => "Action",
            Payload::Share { .. } => "Share",
            Payload::Unshare { .. } => "Unshare",
            Payload::Profile { .. } => "Profile",
            Payload::Message { .. } => "Message",
        }
    }

    fn object(&self) -> Value {
        match self {
            Payload::Say { text } | Payload::Action { text } => json!({ "text": text }),
            Payload::Share { files } => json!({ "files": files }),
            Payload::Unshare { files } => json!({ "files": files }),
            Payload::Profile { bio } => json!({ "bio": bio }),
            Payload::Message { to, text, sealed } => {
                json!({ "to": to.to_string(), "text": text, "sealed": sealed })
            }
        }
    }
}

/// One activity, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// Unique: `{origin base URL}/api/s2s/activities/{opaque}`.
    pub id: String,
    /// Who acts; always has a domain: the origin instance.
    pub actor: Address,
    /// When, in unix seconds (RFC 3339 UTC on the wire).
    pub published: i64,
    pub payload: Payload,
}

/// The wire form of an activity, before its object is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActivity {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    actor: String,
    published: String,
    object: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextObject {
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareObject {
    files: Vec<SharedFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnshareObject {
    files: Vec<UnsharedFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileObject {
    bio: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageObject {
    to: String,
    text: String,
    sealed: bool,
}

/// Why an activity or envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActivityError {
    #[error("not an activity envelope: {0}")]
    Malformed(String),
    #[error("unknown activity type {0:?}")]
    UnknownType(String),
    #[error("activity {field} is {len} bytes, the limit is {limit}")]
    TooLong {
        field: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("activity lists {0} files, the limit is {MAX_FILES_PER_ACTIVITY}")]
    TooManyFiles(usize),
    #[error("bad actor {0:?}: expected @nick@domain")]
    BadActor(String),
    #[error("bad file id {0:?}: expected 64 lowercase hex digits")]
    BadFileId(String),
    #[error("bad published time {0:?}: expected RFC 3339")]
    BadTime(String),
    #[error("activity id {id:?} is not under the actor's instance {domain}")]
    ForeignId { id: String, domain: String },
    #[error("the proof's key {key_id:?} is not the actor's instance {domain}")]
    ForeignKey { key_id: String, domain: String },
    #[error("the proof's signature does not match the activity")]
    BadProof,
}

impl Activity {
    /// A new activity by `actor` (which must carry the origin's domain), with a fresh id.
    pub fn new(base_url: &str, actor: Address, published: i64, payload: Payload) -> Activity {
        let id = format!("{base_url}{ID_PATH}{}", fresh_id(published));
        Activity {
            id,
            actor,
            published,
            payload,
        }
    }

    /// The actor's instance.
    pub fn domain(&self) -> &str {
        self.actor.domain.as_deref().unwrap_or_default()
    }

    /// The wire JSON of the activity.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "type": self.payload.kind(),
            "actor": self.actor.to_string(),
            "published": rfc3339(self.published),
            "object": self.payload.object(),
        })
    }

    /// Parses and checks the wire JSON: schema, bounds, actor address, and that the id lives
    /// under the actor's instance (`{scheme}DOMAIN/api/s2s/activities/`, the scheme of every
    /// peer URL).
    pub fn from_json(value: Value, scheme: Scheme) -> Result<Activity, ActivityError> {
        let raw: RawActivity =
            serde_json::from_value(value).map_err(|e| ActivityError::Malformed(e.to_string()))?;
        bound("id", &raw.id, MAX_ID_BYTES)?;
        bound("actor", &raw.actor, MAX_ID_BYTES)?;
        let actor = parse_actor(&raw.actor)?;
        let domain = actor.domain.clone().unwrap_or_default();
        let prefix = format!("{}{ID_PATH}", scheme.base_url(&domain));
        let opaque = raw.id.strip_prefix(&prefix).unwrap_or_default();
        if opaque.is_empty() || !opaque.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ActivityError::ForeignId { id: raw.id, domain });
        }
        let published = parse_rfc3339(&raw.published)?;
        let object = |e: serde_json::Error| ActivityError::Malformed(e.to_string());
        let payload = match raw.kind.as_str() {
            "Say" | "Action" => {
                let o: TextObject = serde_json::from_value(raw.object).map_err(object)?;
                bound("text", &o.text, MAX_TEXT_BYTES)?;
                if raw.kind == "Say" {
                    Payload::Say { text: o.text }
                } else {
                    Payload::Action { text: o.text }
                }
            }
            "Share" => {
                let o: ShareObject = serde_json::from_value(raw.object).map_err(object)?;
                files_bound(o.files.len())?;
                for f in &o.files {
                    check_file_id(&f.id)?;
                    bound("file name", &f.name, MAX_PATH_BYTES)?;
                    bound("file path", &f.path, MAX_PATH_BYTES)?;
                }
                Payload::Share { files: o.files }
            }
            "Unshare" => {
                let o: UnshareObject = serde_json::from_value(raw.object).map_err(object)?;
                files_bound(o.files.len())?;
                for f in &o.files {
                    check_file_id(&f.id)?;
                    bound("file path", &f.path, MAX_PATH_BYTES)?;
                }
                Payload::Unshare { files: o.files }
            }
            "Profile" => {
                let o: ProfileObject = serde_json::from_value(raw.object).map_err(object)?;
                bound("bio", &o.bio, MAX_BIO_BYTES)?;
                Payload::Profile { bio: o.bio }
            }
            "Message" => {
                let o: MessageObject = serde_json::from_value(raw.object).map_err(object)?;
                bound("to", &o.to, MAX_ID_BYTES)?;
                bound("text", &o.text, MAX_MESSAGE_BYTES)?;
                let to = parse_actor(&o.to)?;
                Payload::Message {
                    to,
                    text: o.text,
                    sealed: o.sealed,
                }
            }
            other => return Err(ActivityError::UnknownType(other.chars().take(64).collect())),
        };
        Ok(Activity {
            id: raw.id,
            actor,
            published,
            payload,
        })
    }
}

/// An activity with its origin's proof, as posted to an inbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub activity: Value,
    pub proof: Proof,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// The origin instance's key id (`{base URL}/api/s2s/instance#main-key`).
    pub key_id: String,
    /// Base64 (standard, padded) Ed25519 signature over the activity's canonical JSON.
    pub signature: String,
}

impl Envelope {
    /// Signs `activity` with the origin's key.
    pub fn seal(
        activity: &Activity,
        key_id: &str,
        sign: impl FnOnce(&[u8]) -> [u8; 64],
    ) -> Envelope {
        let value = activity.to_json();
        let signature = sign(canonical(&value).as_bytes());
        Envelope {
            activity: value,
            proof: Proof {
                key_id: key_id.to_owned(),
                signature: base64::engine::general_purpose::STANDARD.encode(signature),
            },
        }
    }

    /// Parses an envelope from a request body.
    pub fn parse(body: &[u8]) -> Result<Envelope, ActivityError> {
        serde_json::from_slice(body).map_err(|e| ActivityError::Malformed(e.to_string()))
    }

    /// Checks the envelope: the activity's schema and bounds, that the proof's key belongs to
    /// the actor's instance, and the proof itself with `verify(message, signature)` (the key
    /// of [`Proof::key_id`]).
    pub fn open(
        &self,
        scheme: Scheme,
        verify: impl FnOnce(&[u8], &[u8]) -> bool,
    ) -> Result<Activity, ActivityError> {
        let activity = Activity::from_json(self.activity.clone(), scheme)?;
        let key_domain = key_domain(&self.proof.key_id);
        if !key_domain.is_some_and(|d| d.eq_ignore_ascii_case(activity.domain())) {
            return Err(ActivityError::ForeignKey {
                key_id: self.proof.key_id.clone(),
                domain: activity.domain().to_owned(),
            });
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(&self.proof.signature)
            .map_err(|_| ActivityError::BadProof)?;
        if !verify(canonical(&self.activity).as_bytes(), &signature) {
            return Err(ActivityError::BadProof);
        }
        Ok(activity)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The domain a key id belongs to: the authority of `scheme://authority/...`.
pub fn key_domain(key_id: &str) -> Option<&str> {
    let rest = key_id
        .strip_prefix("https://")
        .or_else(|| key_id.strip_prefix("http://"))?;
    let end = rest.find(['/', '#', '?']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|d| !d.is_empty())
}

/// RFC 8785 (JCS) canonical JSON for values made of objects, arrays, strings, integers,
/// booleans and null: members sorted by key, no insignificant whitespace, strings escaped as
/// JCS says (which is what `serde_json` writes for a single string).
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            // JCS sorts by UTF-16 code units.
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

fn bound(field: &'static str, text: &str, limit: usize) -> Result<(), ActivityError> {
    if text.len() > limit {
        return Err(ActivityError::TooLong {
            field,
            len: text.len(),
            limit,
        });
    }
    Ok(())
}

fn files_bound(n: usize) -> Result<(), ActivityError> {
    if n == 0 || n > MAX_FILES_PER_ACTIVITY {
        return Err(ActivityError::TooManyFiles(n));
    }
    Ok(())
}

fn check_file_id(id: &str) -> Result<(), ActivityError> {
    if id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(ActivityError::BadFileId(id.chars().take(80).collect()))
    }
}

fn parse_actor(text: &str) -> Result<Address, ActivityError> {
    let bad = || ActivityError::BadActor(text.chars().take(80).collect());
    if !text.starts_with('@') {
        return Err(bad());
    }
    let address = Address::parse(text).map_err(|_| bad())?;
    let domain_ok = address
        .domain
        .as_deref()
        .is_some_and(|d| !d.contains(['@', '/', ' ']));
    if !domain_ok || crate::nick::validate_syntax(&address.nick).is_err() {
        return Err(bad());
    }
    Ok(address)
}

/// A unique opaque id: the time in milliseconds and 64 random bits, in lowercase hex.
fn fresh_id(published: i64) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(published.max(0) as u64 * 1000);
    format!("{millis:012x}{:016x}", rand::random::<u64>())
}

/// Unix seconds as RFC 3339 UTC (`2026-11-30T07:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

fn parse_rfc3339(text: &str) -> Result<i64, ActivityError> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| ActivityError::BadTime(text.chars().take(40).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in signature for the envelope logic: keyed BLAKE3, 64 bytes. The real
    /// Ed25519 keys are exercised in `fed::identity` and the multi-instance tests.
    fn fake_sign(key: u8) -> impl Fn(&[u8]) -> [u8; 64] {
        move |msg| {
            let mut out = [0u8; 64];
            blake3::Hasher::new_keyed(&[key; 32])
                .update(msg)
                .finalize_xof()
                .fill(&mut out);
            out
        }
    }

    fn say(text: &str) -> Activity {
        Activity::new(
            "http://a.test:8080",
            Address::new("alice", "a.test:8080"),
            1_764_489_600,
            Payload::Say {
                text: text.to_owned(),
            },
        )
    }

    const KEY_ID: &str = "http://a.test:8080/api/s2s/instance#main-key";

    #[test]
    fn a_sealed_activity_opens_with_the_right_key_only() {
        let activity = say("hello");
        let envelope = Envelope::seal(&activity, KEY_ID, fake_sign(1));
        let wire = Envelope::parse(&envelope.to_bytes()).unwrap();
        let opened = wire
            .open(Scheme::Http, |m, s| fake_sign(1)(m).as_slice() == s)
            .unwrap();
        assert_eq!(opened, activity);
        assert_eq!(
            wire.open(Scheme::Http, |m, s| fake_sign(2)(m).as_slice() == s),
            Err(ActivityError::BadProof)
        );
    }

    #[test]
    fn a_private_message_round_trips_and_its_recipient_and_size_are_checked() {
        let message = Activity::new(
            "http://a.test:8080",
            Address::new("alice", "a.test:8080"),
            1_764_489_600,
            Payload::Message {
                to: Address::new("bob", "b.test:8080"),
                text: "psst".to_owned(),
                sealed: false,
            },
        );
        let json = message.to_json();
        assert_eq!(json["type"], "Message");
        assert_eq!(json["object"]["to"], "@bob@b.test:8080");
        assert_eq!(Activity::from_json(json.clone(), Scheme::Http), Ok(message));
        let mut no_domain = json.clone();
        no_domain["object"]["to"] = json!("bob");
        assert!(matches!(
            Activity::from_json(no_domain, Scheme::Http),
            Err(ActivityError::BadActor(_))
        ));
        let mut too_long = json;
        too_long["object"]["text"] = json!("x".repeat(MAX_MESSAGE_BYTES + 1));
        assert!(matches!(
            Activity::from_json(too_long, Scheme::Http),
            Err(ActivityError::TooLong { field: "text", .. })
        ));
    }

    #[test]
    fn a_changed_activity_fails_its_proof() {
        let envelope = Envelope::seal(&say("hello"), KEY_ID, fake_sign(1));
        let mut wire = Envelope::parse(&envelope.to_bytes()).unwrap();
        wire.activity["object"]["text"] = json!("hellO");
        assert_eq!(
            wire.open(Scheme::Http, |m, s| fake_sign(1)(m).as_slice() == s),
            Err(ActivityError::BadProof)
        );
    }

    #[test]
    fn member_order_and_spacing_do_not_change_the_canonical_form() {
        let envelope = Envelope::seal(&say("hi \"there\"\n"), KEY_ID, fake_sign(1));
        let pretty = serde_json::to_string_pretty(&envelope).unwrap();
        let reordered: Value = serde_json::from_str(&pretty).unwrap();
        assert_eq!(
            canonical(&reordered["activity"]),
            canonical(&envelope.activity)
        );
        assert!(canonical(&envelope.activity).starts_with("{\"actor\":\"@alice@a.test:8080\""));
        assert!(Envelope::parse(pretty.as_bytes())
            .unwrap()
            .open(Scheme::Http, |m, s| fake_sign(1)(m).as_slice() == s)
            .is_ok());
    }

    #[test]
    fn jcs_sorts_keys_by_utf16_code_units() {
        // RFC 8785 section 3.2.3's point: U+20AC sorts before U+1F600 in UTF-16 order.
        let v: Value = serde_json::from_str(r#"{"😀":1,"€":2,"a":[true,null,"x"]}"#).unwrap();
        assert_eq!(canonical(&v), r#"{"a":[true,null,"x"],"€":2,"😀":1}"#);
    }

    #[test]
    fn a_proof_by_another_instance_is_refused() {
        let envelope = Envelope::seal(
            &say("hi"),
            "http://b.test:8080/api/s2s/instance#main-key",
            fake_sign(1),
        );
        assert!(matches!(
            envelope.open(Scheme::Http, |_, _| true),
            Err(ActivityError::ForeignKey { .. })
        ));
    }

    #[test]
    fn ids_outside_the_actors_instance_are_refused() {
        let mut activity = say("hi");
        activity.id = "http://b.test:8080/api/s2s/activities/abc".into();
        let envelope = Envelope::seal(&activity, KEY_ID, fake_sign(1));
        assert!(matches!(
            envelope.open(Scheme::Http, |_, _| true),
            Err(ActivityError::ForeignId { .. })
        ));
        // On an https:// network (no --dev, or a dev network with a test CA) the origin is https://.
        let envelope = Envelope::seal(&say("hi"), KEY_ID, fake_sign(1));
        assert!(matches!(
            envelope.open(Scheme::Https, |_, _| true),
            Err(ActivityError::ForeignId { .. })
        ));
    }

    #[test]
    fn schema_and_bounds_are_checked() {
        let base = say("hi").to_json();
        let check = |edit: &dyn Fn(&mut Value)| {
            let mut v = base.clone();
            edit(&mut v);
            Activity::from_json(v, Scheme::Http)
        };
        assert!(check(&|_| {}).is_ok());
        assert!(matches!(
            check(&|v| v["object"]["text"] = json!("x".repeat(MAX_TEXT_BYTES + 1))),
            Err(ActivityError::TooLong { field: "text", .. })
        ));
        assert!(matches!(
            check(&|v| v["type"] = json!("Delete")),
            Err(ActivityError::UnknownType(_))
        ));
        assert!(matches!(
            check(&|v| v["actor"] = json!("alice")),
            Err(ActivityError::BadActor(_))
        ));
        assert!(matches!(
            check(&|v| v["actor"] = json!("@-alice@a.example")),
            Err(ActivityError::BadActor(_))
        ));
        // A name reserved here is another instance's own business.
        let admin = base["actor"]
            .as_str()
            .unwrap()
            .replacen("alice", "admin", 1);
        assert!(check(&|v| v["actor"] = json!(admin.clone())).is_ok());
        assert!(matches!(
            check(&|v| v["published"] = json!("yesterday")),
            Err(ActivityError::BadTime(_))
        ));
        assert!(matches!(
            check(&|v| v["extra"] = json!(1)),
            Err(ActivityError::Malformed(_))
        ));
        assert!(matches!(
            check(&|v| v["object"]["color"] = json!("red")),
            Err(ActivityError::Malformed(_))
        ));
        let share = |files: Value| {
            check(&|v| {
                v["type"] = json!("Share");
                v["object"] = json!({ "files": files.clone() });
            })
        };
        let file = json!({"id": "ab".repeat(32), "name": "a.flac", "path": "m/a.flac", "size": 3});
        assert!(share(json!([file])).is_ok());
        assert!(matches!(
            share(json!(vec![file.clone(); MAX_FILES_PER_ACTIVITY + 1])),
            Err(ActivityError::TooManyFiles(_))
        ));
        let mut bad = file.clone();
        bad["id"] = json!("AB".repeat(32));
        assert!(matches!(
            share(json!([bad])),
            Err(ActivityError::BadFileId(_))
        ));
        let mut negative = file;
        negative["size"] = json!(-1);
        assert!(matches!(
            share(json!([negative])),
            Err(ActivityError::Malformed(_))
        ));
    }

    #[test]
    fn key_domains_are_the_authority() {
        assert_eq!(key_domain(KEY_ID), Some("a.test:8080"));
        assert_eq!(key_domain("https://b.example#k"), Some("b.example"));
        assert_eq!(key_domain("ftp://b.example/"), None);
        assert_eq!(key_domain("https:///x"), None);
    }
}
