//! Peers' public keys, pinned on first contact (see `fed::verify`).

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;

/// A peer's pinned key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerKey {
    pub domain: String,
    pub key_id: String,
    /// SPKI PEM.
    pub public_key_pem: String,
    /// Unix seconds.
    pub pinned_at: i64,
}

/// The key pinned for `domain`, if any.
pub fn get(conn: &Connection, domain: &str) -> Result<Option<PeerKey>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT domain, key_id, public_key_pem, pinned_at FROM peer_keys WHERE domain = ?1",
            [domain],
            |r| {
                Ok(PeerKey {
                    domain: r.get(0)?,
                    key_id: r.get(1)?,
                    public_key_pem: r.get(2)?,
                    pinned_at: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// Pins `key` for its domain, replacing the key pinned before (a rotation).
pub fn pin(conn: &Connection, key: &PeerKey) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO peer_keys (domain, key_id, public_key_pem, pinned_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (domain) DO UPDATE SET
             key_id = excluded.key_id,
             public_key_pem = excluded.public_key_pem,
             pinned_at = excluded.pinned_at",
        params![key.domain, key.key_id, key.public_key_pem, key.pinned_at],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(domain: &str, pem: &str, at: i64) -> PeerKey {
        PeerKey {
            domain: domain.into(),
            key_id: format!("https://{domain}/api/s2s/instance#main-key"),
            public_key_pem: pem.into(),
            pinned_at: at,
        }
    }

    #[test]
    fn a_pinned_key_is_found_and_a_rotation_replaces_it() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut conn).unwrap();
        assert_eq!(get(&conn, "a.example").unwrap(), None);
        pin(&conn, &key("a.example", "one", 1)).unwrap();
        pin(&conn, &key("b.example", "other", 1)).unwrap();
        assert_eq!(
            get(&conn, "a.example").unwrap(),
            Some(key("a.example", "one", 1))
        );
        pin(&conn, &key("a.example", "two", 5)).unwrap();
        assert_eq!(
            get(&conn, "a.example").unwrap(),
            Some(key("a.example", "two", 5))
        );
        assert_eq!(
            get(&conn, "b.example").unwrap(),
            Some(key("b.example", "other", 1))
        );
    }
}
