//! Users and their SSH keys. Functions here run on the store thread (see [`super::Store::call`]).

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;

/// What a verified key may do with a nickname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The key is one of this user's keys.
    Known { user_id: i64, nick: String },
    /// The nickname was free; this key now owns it.
    Claimed { user_id: i64, nick: String },
    /// Another key owns the nickname.
    NickTaken,
    /// The key already belongs to another nickname (one identity per key).
    KeyBelongsTo { nick: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub fingerprint: String,
    pub public_key: String,
    pub added_at: i64,
}

/// Decides what `fingerprint` may do as `nick`, claiming the nickname if it is free.
/// `nick` must already satisfy the nickname rules.
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
        Some((_, owner_nick)) => AuthOutcome::KeyBelongsTo { nick: owner_nick },
        None => {
            if nick_taken(&tx, nick)? {
                AuthOutcome::NickTaken
            } else {
                tx.execute(
                    "INSERT INTO users (nick, nick_key, created_at) VALUES (?1, ?2, ?3)",
                    params![nick, nick_key, now],
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

/// Adds a key to a user; refuses a key that is already anyone's.
pub fn add_key(
    conn: &mut Connection,
    user_id: i64,
    fingerprint: &str,
    public_key: &str,
    now: i64,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let owner = key_owner(&tx, fingerprint)?;
    match owner {
        Some((owner_id, _)) if owner_id == user_id => {
            return Err(StoreError::Conflict(format!(
                "key {fingerprint} is already one of your keys"
            )))
        }
        Some((_, nick)) => {
            return Err(StoreError::Conflict(format!(
                "key {fingerprint} already belongs to {nick}"
            )))
        }
        None => {}
    }
    tx.execute(
        "INSERT INTO user_keys (fingerprint, user_id, public_key, added_at) VALUES (?1, ?2, ?3, ?4)",
        params![fingerprint, user_id, public_key, now],
    )?;
    tx.commit()?;
    Ok(())
}

/// Removes one of a user's keys; the last key cannot go (the nickname would be lost for good).
pub fn remove_key(
    conn: &mut Connection,
    user_id: i64,
    fingerprint: &str,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
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
        return Err(StoreError::Conflict(format!(
            "no key {fingerprint} among your keys; see /keys"
        )));
    }
    if count <= 1 {
        return Err(StoreError::Conflict(format!(
            "key {fingerprint} is your only key; add another before removing it"
        )));
    }
    tx.execute(
        "DELETE FROM user_keys WHERE user_id = ?1 AND fingerprint = ?2",
        params![user_id, fingerprint],
    )?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
                nick: "Alice".into()
            }
        );
        assert!(
            !nick_taken(&conn, "carol").unwrap(),
            "a refused claim creates nothing"
        );
    }

    #[test]
    fn a_second_key_can_be_added_and_the_last_cannot_be_removed() {
        let mut conn = crate::store::open_in_memory();
        let AuthOutcome::Claimed { user_id, .. } =
            authenticate(&mut conn, "alice", "SHA256:a", "ssh-ed25519 A", 1).unwrap()
        else {
            panic!("expected a claim")
        };
        add_key(&mut conn, user_id, "SHA256:b", "ssh-ed25519 B", 2).unwrap();
        assert!(add_key(&mut conn, user_id, "SHA256:b", "ssh-ed25519 B", 3).is_err());
        let b = authenticate(&mut conn, "alice", "SHA256:b", "ssh-ed25519 B", 4).unwrap();
        assert!(matches!(b, AuthOutcome::Known { .. }));
        remove_key(&mut conn, user_id, "SHA256:a").unwrap();
        let err = remove_key(&mut conn, user_id, "SHA256:b")
            .unwrap_err()
            .to_string();
        assert!(err.contains("only key"), "{err}");
        assert_eq!(list_keys(&conn, user_id).unwrap().len(), 1);
    }
}
