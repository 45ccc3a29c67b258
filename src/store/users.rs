//! Users and their SSH keys. Functions here run on the store thread (see [`super::Store::call`]).

use rusqlite::{params, Connection, OptionalExtension};

use super::{KeyRefusal, StoreError};
use crate::nick;

/// How long a code from `/keys add` stays valid, in seconds (as a one-time login code would).
pub const PENDING_KEY_TTL_SECS: i64 = 10 * 60;
/// Most keys one user may have waiting for confirmation at once; more is a mistake or abuse.
pub const MAX_PENDING_KEYS: i64 = 5;

/// What a verified key may do with a nickname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The key is one of this user's keys.
    Known { user_id: i64, nick: String },
    /// The nickname was free; this key now owns it.
    Claimed { user_id: i64, nick: String },
    /// Another key owns the nickname.
    NickTaken,
    /// The nickname is free but its skeleton is that of an existing or reserved nickname.
    NickLookalike,
    /// The key already belongs to another nickname (one identity per key). `owner` is for the
    /// server's log only: telling the client would map public keys to nicknames.
    KeyBelongsTo { owner: String },
}

/// What logging in as `NICK+CODE` with a verified key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// The pending key is now one of the user's keys (or already was); log in as `nick`.
    Confirmed { user_id: i64, nick: String },
    /// No key waiting for `nick` has this code and this fingerprint (wrong code, expired,
    /// another key, or no such nickname). Nothing changed.
    NoMatch,
    /// The key belongs to another nickname; `owner` is for the server's log only. The pending
    /// key stays, in case that nickname lets the key go before the code expires.
    KeyBelongsTo { owner: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub fingerprint: String,
    pub public_key: String,
    pub added_at: i64,
}

/// A key proposed with `/keys add`, waiting for its holder to log in as `NICK+CODE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingKey {
    pub code: String,
    pub fingerprint: String,
    pub public_key: String,
    pub added_at: i64,
    pub expires_at: i64,
}

/// What `/keys remove` took away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Key,
    Pending,
}

/// Decides what `fingerprint` may do as `nick`, claiming the nickname if it is free and does
/// not look like an existing or reserved one. `nick` must already satisfy the nickname rules.
/// Pending keys play no part: until confirmed, a key belongs to nobody.
pub fn authenticate(
    conn: &mut Connection,
    nick: &str,
    fingerprint: &str,
    public_key: &str,
    now: i64,
) -> Result<AuthOutcome, StoreError> {
    let tx = conn.transaction()?;
    let owner = key_owner(&tx, fingerprint)?;
    let nick_key = nick.to_lowercase();
    let outcome = match owner {
        Some((user_id, owner_nick)) if owner_nick.to_lowercase() == nick_key => {
            AuthOutcome::Known {
                user_id,
                nick: owner_nick,
            }
        }
        Some((_, owner)) => AuthOutcome::KeyBelongsTo { owner },
        None => {
            let skeleton = nick::skeleton(nick);
            if nick_taken(&tx, nick)? {
                AuthOutcome::NickTaken
            } else if nick::looks_reserved(&skeleton) || skeleton_taken(&tx, &skeleton)? {
                AuthOutcome::NickLookalike
            } else {
                tx.execute(
                    "INSERT INTO users (nick, nick_key, nick_skeleton, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![nick, nick_key, skeleton, now],
                )?;
                let user_id = tx.last_insert_rowid();
                tx.execute(
                    "INSERT INTO user_keys (fingerprint, user_id, public_key, added_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![fingerprint, user_id, public_key, now],
                )?;
                AuthOutcome::Claimed {
                    user_id,
                    nick: nick.to_owned(),
                }
            }
        }
    };
    tx.commit()?;
    Ok(outcome)
}

/// Whether a user's nickname has this skeleton (see [`nick::skeleton`]).
fn skeleton_taken(conn: &Connection, skeleton: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM users WHERE nick_skeleton = ?1)",
        [skeleton],
        |r| r.get(0),
    )?)
}

/// The user (id, nick) a key belongs to, if any.
fn key_owner(conn: &Connection, fingerprint: &str) -> Result<Option<(i64, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT u.id, u.nick FROM user_keys k JOIN users u ON u.id = k.user_id
             WHERE k.fingerprint = ?1",
            [fingerprint],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// The user id for a nickname (any case).
pub fn user_id_by_nick(conn: &Connection, nick: &str) -> Result<Option<(i64, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id, nick FROM users WHERE nick_key = ?1",
            [nick.to_lowercase()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// A user's public profile as stored: what `/whois` and other instances see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRecord {
    /// The nickname in display case.
    pub nick: String,
    /// When the nickname was claimed (unix seconds).
    pub joined: i64,
    /// How many files the user shares now.
    pub shared_files: u64,
    /// The keys that log in as the user (not those waiting for confirmation).
    pub keys: Vec<KeyRecord>,
    /// Already sanitized and bounded; empty when unset.
    pub bio: String,
}

/// The profile of the user with this nickname (any case), read in one transaction.
pub fn profile(conn: &mut Connection, nick: &str) -> Result<Option<ProfileRecord>, StoreError> {
    let tx = conn.transaction()?;
    let found: Option<(i64, String, i64, String)> = tx
        .query_row(
            "SELECT id, nick, created_at, bio FROM users WHERE nick_key = ?1",
            [nick.to_lowercase()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((user_id, nick, joined, bio)) = found else {
        return Ok(None);
    };
    let record = ProfileRecord {
        nick,
        joined,
        shared_files: super::files::count_shared(&tx, user_id)?,
        keys: list_keys(&tx, user_id)?,
        bio,
    };
    tx.commit()?;
    Ok(Some(record))
}

/// Replaces the user's bio. The caller has sanitized and bounded it (`profile::Bio`).
pub fn set_bio(conn: &Connection, user_id: i64, bio: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE users SET bio = ?2 WHERE id = ?1",
        params![user_id, bio],
    )?;
    Ok(())
}

/// Whether a nickname (any case) is taken.
pub fn nick_taken(conn: &Connection, nick: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM users WHERE nick_key = ?1)",
        [nick.to_lowercase()],
        |r| r.get(0),
    )?)
}

pub fn list_keys(conn: &Connection, user_id: i64) -> Result<Vec<KeyRecord>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT fingerprint, public_key, added_at FROM user_keys
         WHERE user_id = ?1 ORDER BY added_at, fingerprint",
    )?;
    let rows = stmt.query_map([user_id], |r| {
        Ok(KeyRecord {
            fingerprint: r.get(0)?,
            public_key: r.get(1)?,
            added_at: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records `fingerprint` as waiting for confirmation under `code` for [`PENDING_KEY_TTL_SECS`].
/// A new code for a key already waiting replaces the old one. Whether the key belongs to
/// another nickname is not said here (that would map public keys to nicknames): only the
/// key's holder learns it, when confirming.
pub fn propose_key(
    conn: &mut Connection,
    user_id: i64,
    fingerprint: &str,
    public_key: &str,
    code: &str,
    now: i64,
) -> Result<PendingKey, StoreError> {
    let tx = conn.transaction()?;
    forget_expired(&tx, now)?;
    if matches!(key_owner(&tx, fingerprint)?, Some((owner_id, _)) if owner_id == user_id) {
        return Err(StoreError::Keys(KeyRefusal::AlreadyYours {
            fingerprint: fingerprint.to_owned(),
        }));
    }
    tx.execute(
        "DELETE FROM pending_keys WHERE user_id = ?1 AND fingerprint = ?2",
        params![user_id, fingerprint],
    )?;
    let waiting: i64 = tx.query_row(
        "SELECT COUNT(*) FROM pending_keys WHERE user_id = ?1",
        [user_id],
        |r| r.get(0),
    )?;
    if waiting >= MAX_PENDING_KEYS {
        return Err(StoreError::Keys(KeyRefusal::TooManyPending { waiting }));
    }
    let pending = PendingKey {
        code: code.to_ascii_uppercase(),
        fingerprint: fingerprint.to_owned(),
        public_key: public_key.to_owned(),
        added_at: now,
        expires_at: now + PENDING_KEY_TTL_SECS,
    };
    tx.execute(
        "INSERT INTO pending_keys (code, user_id, fingerprint, public_key, added_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            pending.code,
            user_id,
            pending.fingerprint,
            pending.public_key,
            pending.added_at,
            pending.expires_at
        ],
    )?;
    tx.commit()?;
    Ok(pending)
}

/// A verified key logging in as `nick+code`: moves the matching pending key into the user's
/// keys. `nick` must already satisfy the nickname rules.
pub fn confirm_key(
    conn: &mut Connection,
    nick: &str,
    code: &str,
    fingerprint: &str,
    now: i64,
) -> Result<ConfirmOutcome, StoreError> {
    let tx = conn.transaction()?;
    forget_expired(&tx, now)?;
    let Some((user_id, nick)) = user_id_by_nick(&tx, nick)? else {
        tx.commit()?;
        return Ok(ConfirmOutcome::NoMatch);
    };
    let pending: Option<String> = tx
        .query_row(
            "SELECT public_key FROM pending_keys
             WHERE code = ?1 AND user_id = ?2 AND fingerprint = ?3",
            params![code.to_ascii_uppercase(), user_id, fingerprint],
            |r| r.get(0),
        )
        .optional()?;
    let Some(public_key) = pending else {
        tx.commit()?;
        return Ok(ConfirmOutcome::NoMatch);
    };
    let outcome = match key_owner(&tx, fingerprint)? {
        Some((owner_id, owner)) if owner_id != user_id => ConfirmOutcome::KeyBelongsTo { owner },
        owner => {
            if owner.is_none() {
                tx.execute(
                    "INSERT INTO user_keys (fingerprint, user_id, public_key, added_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![fingerprint, user_id, public_key, now],
                )?;
            }
            tx.execute(
                "DELETE FROM pending_keys WHERE user_id = ?1 AND fingerprint = ?2",
                params![user_id, fingerprint],
            )?;
            ConfirmOutcome::Confirmed { user_id, nick }
        }
    };
    tx.commit()?;
    Ok(outcome)
}

/// A user's keys waiting for confirmation that have not expired, oldest first.
pub fn list_pending(
    conn: &Connection,
    user_id: i64,
    now: i64,
) -> Result<Vec<PendingKey>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT code, fingerprint, public_key, added_at, expires_at FROM pending_keys
         WHERE user_id = ?1 AND expires_at > ?2 ORDER BY added_at, fingerprint",
    )?;
    let rows = stmt.query_map(params![user_id, now], |r| {
        Ok(PendingKey {
            code: r.get(0)?,
            fingerprint: r.get(1)?,
            public_key: r.get(2)?,
            added_at: r.get(3)?,
            expires_at: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Drops every pending key whose code has expired.
fn forget_expired(conn: &Connection, now: i64) -> Result<(), StoreError> {
    conn.execute("DELETE FROM pending_keys WHERE expires_at <= ?1", [now])?;
    Ok(())
}

/// Removes one of a user's keys, or cancels a pending one (by fingerprint or code); the last
/// key cannot go (the nickname would be lost for good).
pub fn remove_key(
    conn: &mut Connection,
    user_id: i64,
    fingerprint: &str,
    now: i64,
) -> Result<Removed, StoreError> {
    let tx = conn.transaction()?;
    forget_expired(&tx, now)?;
    let cancelled = tx.execute(
        "DELETE FROM pending_keys WHERE user_id = ?1 AND (fingerprint = ?2 OR code = ?3)",
        params![user_id, fingerprint, fingerprint.to_ascii_uppercase()],
    )?;
    if cancelled > 0 {
        tx.commit()?;
        return Ok(Removed::Pending);
    }
    let count: i64 = tx.query_row(
        "SELECT COUNT(*) FROM user_keys WHERE user_id = ?1",
        [user_id],
        |r| r.get(0),
    )?;
    let mine: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM user_keys WHERE user_id = ?1 AND fingerprint = ?2)",
        params![user_id, fingerprint],
        |r| r.get(0),
    )?;
    if !mine {
        return Err(StoreError::Keys(KeyRefusal::NotYours {
            fingerprint: fingerprint.to_owned(),
        }));
    }
    if count <= 1 {
        return Err(StoreError::Keys(KeyRefusal::OnlyKey {
            fingerprint: fingerprint.to_owned(),
        }));
    }
    tx.execute(
        "DELETE FROM user_keys WHERE user_id = ?1 AND fingerprint = ?2",
        params![user_id, fingerprint],
    )?;
    tx.commit()?;
    Ok(Removed::Key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(conn: &mut Connection, nick: &str, fingerprint: &str) -> i64 {
        match authenticate(conn, nick, fingerprint, "ssh-ed25519 K", 1).unwrap() {
            AuthOutcome::Claimed { user_id, .. } => user_id,
            other => panic!("{nick} not claimed: {other:?}"),
        }
    }

    fn keys(conn: &Connection, user_id: i64) -> Vec<String> {
        let keys = list_keys(conn, user_id).unwrap();
        keys.into_iter().map(|k| k.fingerprint).collect()
    }

    #[test]
    fn the_first_key_claims_a_nick_and_others_are_refused() {
        let mut conn = crate::store::open_in_memory();
        let a = authenticate(&mut conn, "Alice", "SHA256:a", "ssh-ed25519 A", 1).unwrap();
        assert!(matches!(a, AuthOutcome::Claimed { ref nick, .. } if nick == "Alice"));
        let again = authenticate(&mut conn, "alice", "SHA256:a", "ssh-ed25519 A", 2).unwrap();
        assert!(matches!(again, AuthOutcome::Known { ref nick, .. } if nick == "Alice"));
        let b = authenticate(&mut conn, "ALICE", "SHA256:b", "ssh-ed25519 B", 3).unwrap();
        assert_eq!(b, AuthOutcome::NickTaken);
        let other = authenticate(&mut conn, "carol", "SHA256:a", "ssh-ed25519 A", 4).unwrap();
        assert_eq!(
            other,
            AuthOutcome::KeyBelongsTo {
                owner: "Alice".into()
            }
        );
        assert!(
            !nick_taken(&conn, "carol").unwrap(),
            "a refused claim creates nothing"
        );
    }

    #[test]
    fn a_look_alike_of_an_existing_or_reserved_nickname_is_not_claimed() {
        let mut conn = crate::store::open_in_memory();
        claim(&mut conn, "alice", "SHA256:a");
        for (i, nick) in ["a1ice", "aIice", "alice.", "admin.", "root_", "r00t"]
            .iter()
            .enumerate()
        {
            let fp = format!("SHA256:x{i}");
            let outcome = authenticate(&mut conn, nick, &fp, "ssh-ed25519 X", 2).unwrap();
            assert_eq!(outcome, AuthOutcome::NickLookalike, "{nick}");
            assert!(!nick_taken(&conn, nick).unwrap(), "{nick} was created");
        }
        claim(&mut conn, "alicia", "SHA256:y");
    }

    #[test]
    fn a_proposed_key_belongs_to_nobody_until_its_holder_confirms_it() {
        let mut conn = crate::store::open_in_memory();
        let alice = claim(&mut conn, "alice", "SHA256:a");
        let pending =
            propose_key(&mut conn, alice, "SHA256:b", "ssh-ed25519 B", "c0de", 10).unwrap();
        assert_eq!(pending.code, "C0DE");
        assert_eq!(pending.expires_at, 10 + PENDING_KEY_TTL_SECS);
        assert_eq!(keys(&conn, alice), ["SHA256:a"]);
        // Not alice's yet: the key logging in as alice is refused, as anyone's would be.
        let b = authenticate(&mut conn, "alice", "SHA256:b", "ssh-ed25519 B", 11).unwrap();
        assert_eq!(b, AuthOutcome::NickTaken);
        // Wrong code, wrong key, wrong nickname: nothing changes.
        for (nick, code, fp) in [
            ("alice", "WRONG", "SHA256:b"),
            ("alice", "C0DE", "SHA256:z"),
            ("bob", "C0DE", "SHA256:b"),
        ] {
            let outcome = confirm_key(&mut conn, nick, code, fp, 12).unwrap();
            assert_eq!(outcome, ConfirmOutcome::NoMatch, "{nick} {code} {fp}");
        }
        assert_eq!(list_pending(&conn, alice, 12).unwrap(), [pending]);
        let confirmed = confirm_key(&mut conn, "ALICE", "c0de", "SHA256:b", 13).unwrap();
        assert_eq!(
            confirmed,
            ConfirmOutcome::Confirmed {
                user_id: alice,
                nick: "alice".into()
            }
        );
        assert_eq!(keys(&conn, alice), ["SHA256:a", "SHA256:b"]);
        assert!(list_pending(&conn, alice, 13).unwrap().is_empty());
        // A code works once.
        let again = confirm_key(&mut conn, "alice", "C0DE", "SHA256:b", 14).unwrap();
        assert_eq!(again, ConfirmOutcome::NoMatch);
    }

    #[test]
    fn a_profile_holds_the_join_time_keys_shared_count_and_bio() {
        let mut conn = crate::store::open_in_memory();
        assert_eq!(profile(&mut conn, "alice").unwrap(), None);
        let alice = claim(&mut conn, "Alice", "SHA256:a");
        let fresh = profile(&mut conn, "ALICE").unwrap().unwrap();
        assert_eq!(
            (
                fresh.nick.as_str(),
                fresh.joined,
                fresh.shared_files,
                fresh.bio.as_str()
            ),
            ("Alice", 1, 0, "")
        );
        assert_eq!(fresh.keys.len(), 1);
        for (i, path) in ["a.txt", "b.txt"].iter().enumerate() {
            super::super::files::upsert(&mut conn, alice, path, 1, &format!("{i:064x}"), 0, None)
                .unwrap();
        }
        let ids: Vec<i64> = super::super::files::list(&conn, alice)
            .unwrap()
            .iter()
            .map(|f| f.id)
            .take(1)
            .collect();
        super::super::files::set_shared(&mut conn, alice, &ids, true).unwrap();
        set_bio(&conn, alice, "bass player").unwrap();
        let later = profile(&mut conn, "alice").unwrap().unwrap();
        assert_eq!(later.shared_files, 1);
        assert_eq!(later.bio, "bass player");
    }

    #[test]
    fn an_expired_code_confirms_nothing() {
        let mut conn = crate::store::open_in_memory();
        let alice = claim(&mut conn, "alice", "SHA256:a");
        propose_key(&mut conn, alice, "SHA256:b", "ssh-ed25519 B", "CODE", 10).unwrap();
        let late = 10 + PENDING_KEY_TTL_SECS;
        assert!(list_pending(&conn, alice, late).unwrap().is_empty());
        let outcome = confirm_key(&mut conn, "alice", "CODE", "SHA256:b", late).unwrap();
        assert_eq!(outcome, ConfirmOutcome::NoMatch);
        assert_eq!(keys(&conn, alice), ["SHA256:a"]);
    }

    #[test]
    fn a_key_someone_else_proposed_still_claims_its_own_nickname() {
        let mut conn = crate::store::open_in_memory();
        let mallory = claim(&mut conn, "mallory", "SHA256:m");
        propose_key(&mut conn, mallory, "SHA256:b", "ssh-ed25519 B", "CODE", 10).unwrap();
        let bob = claim(&mut conn, "bob", "SHA256:b");
        let outcome = confirm_key(&mut conn, "mallory", "CODE", "SHA256:b", 11).unwrap();
        assert_eq!(
            outcome,
            ConfirmOutcome::KeyBelongsTo {
                owner: "bob".into()
            }
        );
        assert_eq!(keys(&conn, mallory), ["SHA256:m"]);
        assert_eq!(keys(&conn, bob), ["SHA256:b"]);
        // Proposing a key that is someone else's says nothing about whose it is.
        propose_key(&mut conn, mallory, "SHA256:b", "ssh-ed25519 B", "CODE2", 12).unwrap();
    }

    #[test]
    fn pending_keys_are_bounded_and_can_be_cancelled() {
        let mut conn = crate::store::open_in_memory();
        let alice = claim(&mut conn, "alice", "SHA256:a");
        for i in 0..MAX_PENDING_KEYS {
            let fp = format!("SHA256:p{i}");
            propose_key(&mut conn, alice, &fp, "ssh-ed25519 P", &format!("C{i}"), 10).unwrap();
        }
        // Asking again for a waiting key replaces its code rather than adding one.
        propose_key(&mut conn, alice, "SHA256:p0", "ssh-ed25519 P", "NEW", 10).unwrap();
        let err = propose_key(&mut conn, alice, "SHA256:q", "ssh-ed25519 Q", "Q", 10).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Keys(KeyRefusal::TooManyPending {
                    waiting: MAX_PENDING_KEYS
                })
            ),
            "{err}"
        );
        assert_eq!(
            remove_key(&mut conn, alice, "SHA256:p1", 11).unwrap(),
            Removed::Pending
        );
        assert_eq!(
            remove_key(&mut conn, alice, "new", 11).unwrap(),
            Removed::Pending
        );
        let left = list_pending(&conn, alice, 11).unwrap();
        assert_eq!(left.len() as i64, MAX_PENDING_KEYS - 2);
        propose_key(&mut conn, alice, "SHA256:q", "ssh-ed25519 Q", "Q", 12).unwrap();
        // Expired codes make room.
        let late = 12 + PENDING_KEY_TTL_SECS;
        propose_key(&mut conn, alice, "SHA256:r", "ssh-ed25519 R", "R", late).unwrap();
        assert_eq!(list_pending(&conn, alice, late).unwrap().len(), 1);
    }

    #[test]
    fn a_confirmed_key_logs_in_and_the_last_key_cannot_be_removed() {
        let mut conn = crate::store::open_in_memory();
        let alice = claim(&mut conn, "alice", "SHA256:a");
        propose_key(&mut conn, alice, "SHA256:b", "ssh-ed25519 B", "CODE", 2).unwrap();
        confirm_key(&mut conn, "alice", "CODE", "SHA256:b", 3).unwrap();
        let err = propose_key(&mut conn, alice, "SHA256:b", "ssh-ed25519 B", "X", 3).unwrap_err();
        assert!(
            matches!(err, StoreError::Keys(KeyRefusal::AlreadyYours { .. })),
            "{err}"
        );
        let b = authenticate(&mut conn, "alice", "SHA256:b", "ssh-ed25519 B", 4).unwrap();
        assert!(matches!(b, AuthOutcome::Known { .. }));
        assert_eq!(
            remove_key(&mut conn, alice, "SHA256:a", 5).unwrap(),
            Removed::Key
        );
        let err = remove_key(&mut conn, alice, "SHA256:b", 5).unwrap_err();
        assert!(
            matches!(err, StoreError::Keys(KeyRefusal::OnlyKey { .. })),
            "{err}"
        );
        assert_eq!(keys(&conn, alice), ["SHA256:b"]);
    }
}
