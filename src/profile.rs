//! Users' public profiles: what `/whois` shows and what other instances fetch with
//! `GET /api/s2s/user/{address}`.
//!
//! [`Profile`] is the domain type, local or remote. [`ProfileDoc`] is its JSON form, the same
//! object for `whois --json` and for the S2S endpoint:
//!
//! ```json
//! {"address": "@alice@rose.example", "nick": "alice", "domain": "rose.example",
//!  "joined": "2026-11-30T07:21:13Z", "shared_files": 3,
//!  "keys": [{"fingerprint": "SHA256:...", "public_key": "ssh-ed25519 AAAA..."}],
//!  "bio": "bass player"}
//! ```
//!
//! A document from another instance is untrusted: [`ProfileDoc::into_profile`] checks that it
//! is the profile that was asked for, that every key's fingerprint is that key's, and cleans
//! the bio exactly as a local one ([`Bio::new`]).

use rosewire_shell::Address;
use russh::keys::{HashAlg, PublicKey};
use serde::{Deserialize, Serialize};

use crate::nick;

/// Most characters in a bio, counted after [`rosewire_shell::sanitize`] (so at most 1,120
/// bytes of UTF-8): a line or two about oneself, as a short status would be.
pub const MAX_BIO_CHARS: usize = 280;
/// Most keys a remote profile may list; a document with more is refused. A local user's keys
/// are all listed (each one had to log in to join).
pub const MAX_PROFILE_KEYS: usize = 32;

/// A user's public profile, from this instance or another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The user's full address; the domain is always set.
    pub address: Address,
    /// When the nickname was claimed on its home instance (unix seconds).
    pub joined: i64,
    /// How many files the user shares now.
    pub shared_files: u64,
    /// The keys that log in as the user, oldest first.
    pub keys: Vec<ProfileKey>,
    /// Sanitized and at most [`MAX_BIO_CHARS`]; empty when unset.
    pub bio: String,
}

/// One of a user's SSH keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileKey {
    /// `SHA256:...`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// The OpenSSH one-line form (`ssh-ed25519 AAAA...`), as in `authorized_keys`.
    pub public_key: String,
}

impl Profile {
    /// The fingerprints of the user's keys.
    pub fn key_fingerprints(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.fingerprint.as_str()).collect()
    }

    /// The home instance's domain.
    pub fn domain(&self) -> &str {
        self.address.domain.as_deref().unwrap_or_default()
    }
}

/// A bio that may be stored and shown: sanitized like a chat line, trimmed, bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bio(String);

/// Why a bio was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BioError {
    #[error("bio too long: {chars} characters (the limit is {MAX_BIO_CHARS}); shorten it")]
    TooLong { chars: usize },
}

impl Bio {
    /// `text` without controls or escape sequences ([`rosewire_shell::sanitize`]), trimmed;
    /// refused if longer than [`MAX_BIO_CHARS`] characters then.
    pub fn new(text: &str) -> Result<Bio, BioError> {
        let clean = rosewire_shell::sanitize(text).trim().to_owned();
        let chars = clean.chars().count();
        if chars > MAX_BIO_CHARS {
            return Err(BioError::TooLong { chars });
        }
        Ok(Bio(clean))
    }

    /// No bio.
    pub fn empty() -> Bio {
        Bio(String::new())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The JSON form of a [`Profile`]: `whois --json` prints it, `GET /api/s2s/user/{address}`
/// serves it. Field names are the wire format; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileDoc {
    /// `@nick@domain`.
    pub address: String,
    pub nick: String,
    pub domain: String,
    /// RFC 3339, UTC.
    pub joined: String,
    pub shared_files: u64,
    pub keys: Vec<KeyDoc>,
    /// Empty when unset.
    pub bio: String,
}

/// A key in a [`ProfileDoc`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDoc {
    pub fingerprint: String,
    pub public_key: String,
}

impl From<&Profile> for ProfileDoc {
    fn from(p: &Profile) -> ProfileDoc {
        ProfileDoc {
            address: p.address.to_string(),
            nick: p.address.nick.clone(),
            domain: p.domain().to_owned(),
            joined: rfc3339(p.joined),
            shared_files: p.shared_files,
            keys: p
                .keys
                .iter()
                .map(|k| KeyDoc {
                    fingerprint: k.fingerprint.clone(),
                    public_key: k.public_key.clone(),
                })
                .collect(),
            bio: p.bio.clone(),
        }
    }
}

/// Why a profile document from another instance was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileDocError {
    #[error("the profile is of {got}, not of {asked}")]
    NotAsked { asked: String, got: String },
    #[error("the profile's address {address:?} does not match its nick and domain")]
    Inconsistent { address: String },
    #[error("the profile's nick {nick:?} is not a valid nickname")]
    BadNick { nick: String },
    #[error("the profile's joined time {joined:?} is not an RFC 3339 time")]
    BadJoined { joined: String },
    #[error("the profile lists {count} keys (the limit is {MAX_PROFILE_KEYS})")]
    TooManyKeys { count: usize },
    #[error("the profile's key {fingerprint:?} is not an OpenSSH public key")]
    BadKey { fingerprint: String },
    #[error("the profile's key is listed as {listed:?} but its fingerprint is {actual}")]
    WrongFingerprint { listed: String, actual: String },
    #[error("the profile's {0}")]
    Bio(BioError),
}

impl ProfileDoc {
    /// Checks a document another instance sent for `asked` (an address with a domain) and
    /// turns it into a [`Profile`]: it must be that user's profile (nick and domain, any
    /// case), consistent, with valid keys whose fingerprints match; its bio is cleaned as a
    /// local one and refused when too long.
    pub fn into_profile(self, asked: &Address) -> Result<Profile, ProfileDocError> {
        let address = Address::new(&self.nick, &self.domain);
        if asked.domain.is_none() || address != *asked {
            return Err(ProfileDocError::NotAsked {
                asked: asked.to_string(),
                got: sanitized(&address.to_string()),
            });
        }
        if Address::parse(&self.address).ok().as_ref() != Some(&address) {
            return Err(ProfileDocError::Inconsistent {
                address: sanitized(&self.address),
            });
        }
        // Another instance may let a user have a name reserved here.
        match nick::validate_syntax(&self.nick) {
            Ok(()) => {}
            Err(_) => {
                return Err(ProfileDocError::BadNick {
                    nick: sanitized(&self.nick),
                })
            }
        }
        let joined = parse_rfc3339(&self.joined).ok_or_else(|| ProfileDocError::BadJoined {
            joined: sanitized(&self.joined),
        })?;
        if self.keys.len() > MAX_PROFILE_KEYS {
            return Err(ProfileDocError::TooManyKeys {
                count: self.keys.len(),
            });
        }
        let keys = self
            .keys
            .into_iter()
            .map(checked_key)
            .collect::<Result<_, _>>()?;
        let bio = Bio::new(&self.bio).map_err(ProfileDocError::Bio)?;
        Ok(Profile {
            address: Address::new(&self.nick, &self.domain.to_lowercase()),
            joined,
            shared_files: self.shared_files,
            keys,
            bio: bio.0,
        })
    }
}

/// A remote key, parsed and fingerprinted here: the listed fingerprint must be the key's.
fn checked_key(key: KeyDoc) -> Result<ProfileKey, ProfileDocError> {
    let mut parsed =
        PublicKey::from_openssh(key.public_key.trim()).map_err(|_| ProfileDocError::BadKey {
            fingerprint: sanitized(&key.fingerprint),
        })?;
    let actual = parsed.fingerprint(HashAlg::Sha256).to_string();
    if actual != key.fingerprint {
        return Err(ProfileDocError::WrongFingerprint {
            listed: sanitized(&key.fingerprint),
            actual,
        });
    }
    // Re-encoded without its comment: a comment is the owner's words, not the key.
    parsed.set_comment("");
    let public_key = parsed.to_openssh().map_err(|_| ProfileDocError::BadKey {
        fingerprint: actual.clone(),
    })?;
    Ok(ProfileKey {
        fingerprint: actual,
        public_key,
    })
}

/// At most 64 characters of untrusted text, without controls, for an error message.
fn sanitized(text: &str) -> String {
    rosewire_shell::sanitize(text).chars().take(64).collect()
}

/// An RFC 3339 timestamp (UTC) for unix seconds.
pub fn rfc3339(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// Unix seconds of an RFC 3339 timestamp.
fn parse_rfc3339(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real Ed25519 key line and its fingerprint.
    fn key() -> KeyDoc {
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl laptop";
        let parsed = PublicKey::from_openssh(line).unwrap();
        KeyDoc {
            fingerprint: parsed.fingerprint(HashAlg::Sha256).to_string(),
            public_key: line.to_owned(),
        }
    }

    fn doc() -> ProfileDoc {
        ProfileDoc {
            address: "@Alice@rose.example".into(),
            nick: "Alice".into(),
            domain: "rose.example".into(),
            joined: "2026-11-30T07:21:13Z".into(),
            shared_files: 3,
            keys: vec![key()],
            bio: "bass \u{1b}[31mplayer".into(),
        }
    }

    fn asked() -> Address {
        Address::parse("@alice@ROSE.example").unwrap()
    }

    #[test]
    fn a_bio_is_sanitized_trimmed_and_bounded() {
        assert_eq!(
            Bio::new("  hi \u{1b}]0;title\u{7}there\u{202e} ")
                .unwrap()
                .as_str(),
            "hi there"
        );
        let longest = "é".repeat(MAX_BIO_CHARS);
        assert_eq!(Bio::new(&longest).unwrap().as_str(), longest);
        assert_eq!(
            Bio::new(&format!("{longest}x")),
            Err(BioError::TooLong {
                chars: MAX_BIO_CHARS + 1
            })
        );
        // Escape sequences do not count against the bound: they are gone.
        let coloured = format!("\u{1b}[31m{longest}\u{1b}[0m");
        assert_eq!(Bio::new(&coloured).unwrap().as_str(), longest);
    }

    #[test]
    fn a_remote_profile_is_accepted_cleaned_and_its_key_comment_dropped() {
        let profile = doc().into_profile(&asked()).unwrap();
        assert_eq!(profile.address.to_string(), "@Alice@rose.example");
        assert_eq!(profile.joined, 1_796_023_273);
        assert_eq!(profile.bio, "bass player");
        assert_eq!(profile.key_fingerprints(), [key().fingerprint.as_str()]);
        assert!(!profile.keys[0].public_key.contains("laptop"));
        // And back: the document of a profile reads as that profile.
        let again = ProfileDoc::from(&profile).into_profile(&asked()).unwrap();
        assert_eq!(again, profile);
    }

    #[test]
    fn a_remote_profile_that_is_not_what_was_asked_or_is_malformed_is_refused() {
        type Edit = fn(&mut ProfileDoc);
        let cases: &[(&str, Edit, &str)] = &[
            ("other nick", |d| d.nick = "mallory".into(), "not of @alice"),
            (
                "other domain",
                |d| d.domain = "evil.example".into(),
                "not of",
            ),
            (
                "address disagrees",
                |d| d.address = "@alice@evil.example".into(),
                "does not match",
            ),
            ("bad time", |d| d.joined = "yesterday".into(), "rfc 3339"),
            (
                "too many keys",
                |d| d.keys = vec![d.keys[0].clone(); MAX_PROFILE_KEYS + 1],
                "keys (the limit",
            ),
            (
                "not a key",
                |d| d.keys[0].public_key = "ssh-ed25519 nonsense".into(),
                "not an openssh",
            ),
            (
                "someone else's fingerprint",
                |d| d.keys[0].fingerprint = "SHA256:forged".into(),
                "but its fingerprint",
            ),
            (
                "bio too long",
                |d| d.bio = "x".repeat(MAX_BIO_CHARS + 1),
                "bio too long",
            ),
        ];
        for (what, edit, says) in cases {
            let mut d = doc();
            edit(&mut d);
            let err = d.into_profile(&asked()).unwrap_err().to_string();
            assert!(err.to_lowercase().contains(says), "{what}: {err}");
        }
        let mut bad_nick = doc();
        bad_nick.nick = "al\u{1b}ice".into();
        bad_nick.address = "@al\u{1b}ice@rose.example".into();
        let asked_bad = Address::parse("@al\u{1b}ice@rose.example").unwrap();
        let err = bad_nick.into_profile(&asked_bad).unwrap_err();
        assert!(matches!(err, ProfileDocError::BadNick { .. }), "{err}");
        assert!(!err.to_string().contains('\u{1b}'), "{err}");
        let no_domain = Address::parse("alice").unwrap();
        assert!(doc().into_profile(&no_domain).is_err());
    }
}
