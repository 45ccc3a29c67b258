//! Private messages and ignore lists (migration 11).
//!
//! Every user holds their own copy of a message: the sender's (`outgoing`, state `queued`,
//! `delivered` or `failed`) and the recipient's (`unread` or `read`). A conversation is the
//! rows of one owner with one other party (`peer_key`, the lowercase `@nick@domain`).

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::StoreError;

/// One copy of a message, as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The owner's number for it (`msgs --raw ID`).
    pub id: i64,
    /// The other party: `@nick@domain` as spelled.
    pub peer: String,
    /// Sent by the owner (else received).
    pub outgoing: bool,
    pub text: String,
    /// The text is age armor, sealed to the recipient's keys.
    pub sealed: bool,
    /// Unix seconds.
    pub at: i64,
    /// `queued`, `delivered` or `failed` for a sent message; `unread` or `read` for a
    /// received one.
    pub state: String,
    /// Why a sent message failed.
    pub reason: Option<String>,
}

/// A message to keep: one copy for one owner.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub owner_id: i64,
    /// The other party, `@nick@domain`.
    pub peer: String,
    pub outgoing: bool,
    pub text: String,
    pub sealed: bool,
    pub at: i64,
    pub state: &'static str,
    /// The activity that carries (or carried) it, for a remote message.
    pub activity_id: Option<String>,
}

/// One conversation in a user's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The other party, as spelled in the newest message.
    pub peer: String,
    pub messages: i64,
    pub unread: i64,
    /// When the newest message was sent or received.
    pub last_at: i64,
}

/// A sent message whose fate is now known (the outbox settled its activity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub id: i64,
    pub owner_id: i64,
    pub peer: String,
    /// Why it failed; `None` when delivered.
    pub failure: Option<String>,
}

const COLUMNS: &str = "id, peer, outgoing, text, sealed, at, state, reason";

fn message(r: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        id: r.get(0)?,
        peer: r.get(1)?,
        outgoing: r.get(2)?,
        text: r.get(3)?,
        sealed: r.get(4)?,
        at: r.get(5)?,
        state: r.get(6)?,
        reason: r.get(7)?,
    })
}

/// Keeps one copy; past `max_per_owner` copies the owner's oldest go. Returns its id.
pub fn insert(conn: &Connection, m: &NewMessage, max_per_owner: i64) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO messages (owner_id, peer, peer_key, outgoing, text, sealed, at, state,
                               activity_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            m.owner_id,
            m.peer,
            m.peer.to_lowercase(),
            m.outgoing,
            m.text,
            m.sealed,
            m.at,
            m.state,
            m.activity_id
        ],
    )?;
    let id = conn.last_insert_rowid();
    let count: i64 = conn.query_row(
        "SELECT COUNT(*) FROM messages WHERE owner_id = ?1",
        [m.owner_id],
        |r| r.get(0),
    )?;
    let excess = count - max_per_owner.max(1);
    if excess > 0 {
        conn.execute(
            "DELETE FROM messages WHERE id IN
               (SELECT id FROM messages WHERE owner_id = ?1 ORDER BY id LIMIT ?2)",
            params![m.owner_id, excess],
        )?;
    }
    Ok(id)
}

/// The owner's conversations, the most recent first, at most `limit`.
pub fn conversations(
    conn: &Connection,
    owner_id: i64,
    limit: usize,
) -> Result<Vec<Conversation>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.peer, g.n, g.unread, g.last_at
         FROM (SELECT COUNT(*) AS n, SUM(state = 'unread') AS unread, MAX(at) AS last_at,
                      MAX(id) AS last_id
               FROM messages WHERE owner_id = ?1
               GROUP BY peer_key ORDER BY last_id DESC LIMIT ?2) g
         JOIN messages m ON m.id = g.last_id
         ORDER BY g.last_id DESC",
    )?;
    let rows = stmt.query_map(params![owner_id, limit as i64], |r| {
        Ok(Conversation {
            peer: r.get(0)?,
            messages: r.get(1)?,
            unread: r.get(2)?,
            last_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest `limit` messages of the owner's conversation with `peer`, oldest first.
pub fn conversation(
    conn: &Connection,
    owner_id: i64,
    peer: &str,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM messages WHERE owner_id = ?1 AND peer_key = ?2
         ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![owner_id, peer.to_lowercase(), limit as i64],
        message,
    )?;
    let mut list: Vec<StoredMessage> = rows.collect::<Result<_, _>>()?;
    list.reverse();
    Ok(list)
}

/// Marks the owner's received messages from `peer` up to `up_to_id` read; returns how many.
pub fn mark_read(
    conn: &Connection,
    owner_id: i64,
    peer: &str,
    up_to_id: i64,
) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE messages SET state = 'read'
         WHERE owner_id = ?1 AND peer_key = ?2 AND state = 'unread' AND id <= ?3",
        params![owner_id, peer.to_lowercase(), up_to_id],
    )?)
}

/// Marks one received message read (its owner saw it arrive).
pub fn mark_one_read(conn: &Connection, owner_id: i64, id: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE messages SET state = 'read' WHERE owner_id = ?1 AND id = ?2 AND state = 'unread'",
        params![owner_id, id],
    )?;
    Ok(())
}

/// One message of the owner's.
pub fn get(conn: &Connection, owner_id: i64, id: i64) -> Result<Option<StoredMessage>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM messages WHERE owner_id = ?1 AND id = ?2"),
            params![owner_id, id],
            message,
        )
        .optional()?)
}

/// How many received messages the owner has not read.
pub fn unread_count(conn: &Connection, owner_id: i64) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM messages WHERE owner_id = ?1 AND state = 'unread'",
        [owner_id],
        |r| r.get(0),
    )?)
}

/// Who sent the owner's newest received message.
pub fn last_sender(conn: &Connection, owner_id: i64) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT peer FROM messages WHERE owner_id = ?1 AND outgoing = 0
             ORDER BY id DESC LIMIT 1",
            [owner_id],
            |r| r.get(0),
        )
        .optional()?)
}

/// Records the fate of the sent message carried by `activity_id`, if one is: delivered, or
/// failed with `failure`.
pub fn settle(
    conn: &Connection,
    activity_id: &str,
    failure: Option<&str>,
) -> Result<Option<Settled>, StoreError> {
    let (state, reason) = match failure {
        None => ("delivered", None),
        Some(why) => ("failed", Some(why)),
    };
    Ok(conn
        .query_row(
            "UPDATE messages SET state = ?2, reason = ?3
             WHERE activity_id = ?1 AND outgoing = 1 AND state = 'queued'
             RETURNING id, owner_id, peer",
            params![activity_id, state, reason],
            |r| {
                Ok(Settled {
                    id: r.get(0)?,
                    owner_id: r.get(1)?,
                    peer: r.get(2)?,
                    failure: failure.map(str::to_owned),
                })
            },
        )
        .optional()?)
}

/// What `/ignore` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreOutcome {
    Added,
    /// Ignored already.
    Already,
    /// The list holds `max` addresses already.
    Full {
        max: i64,
    },
}

/// Adds `address` (`@nick@domain`) to the user's ignore list, which holds at most `max`.
pub fn ignore(
    conn: &Connection,
    user_id: i64,
    address: &str,
    now: i64,
    max: i64,
) -> Result<IgnoreOutcome, StoreError> {
    let address = address.to_lowercase();
    if is_ignored(conn, user_id, &address)? {
        return Ok(IgnoreOutcome::Already);
    }
    let count: i64 = conn.query_row(
        "SELECT COUNT(*) FROM ignores WHERE user_id = ?1",
        [user_id],
        |r| r.get(0),
    )?;
    if count >= max {
        return Ok(IgnoreOutcome::Full { max });
    }
    conn.execute(
        "INSERT INTO ignores (user_id, address, added_at) VALUES (?1, ?2, ?3)",
        params![user_id, address, now],
    )?;
    Ok(IgnoreOutcome::Added)
}

/// Removes `address` from the user's ignore list; false if it was not there.
pub fn unignore(conn: &Connection, user_id: i64, address: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM ignores WHERE user_id = ?1 AND address = ?2",
        params![user_id, address.to_lowercase()],
    )? == 1)
}

/// The user's ignore list, in the order it was made.
pub fn ignores(conn: &Connection, user_id: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT address FROM ignores WHERE user_id = ?1 ORDER BY added_at, address",
    )?;
    let rows = stmt.query_map([user_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether the user ignores `address`.
pub fn is_ignored(conn: &Connection, user_id: i64, address: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM ignores WHERE user_id = ?1 AND address = ?2",
            params![user_id, address.to_lowercase()],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrate(&mut conn).unwrap();
        for (id, nick) in [(1, "alice"), (2, "bob")] {
            conn.execute(
                "INSERT INTO users (id, nick, nick_key, created_at) VALUES (?1, ?2, ?2, 0)",
                params![id, nick],
            )
            .unwrap();
        }
        conn
    }

    fn new(owner_id: i64, peer: &str, outgoing: bool, text: &str) -> NewMessage {
        NewMessage {
            owner_id,
            peer: peer.to_owned(),
            outgoing,
            text: text.to_owned(),
            sealed: false,
            at: 100,
            state: if outgoing { "queued" } else { "unread" },
            activity_id: Some(format!("act-{owner_id}-{text}")),
        }
    }

    #[test]
    fn conversations_group_by_the_other_party_in_any_case_with_unread_counts() {
        let conn = db();
        insert(&conn, &new(1, "@Bob@b.example", false, "one"), 100).unwrap();
        insert(&conn, &new(1, "@bob@B.example", false, "two"), 100).unwrap();
        insert(&conn, &new(1, "@carol@c.example", true, "hi"), 100).unwrap();
        let list = conversations(&conn, 1, 10).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].peer, "@carol@c.example");
        assert_eq!((list[1].messages, list[1].unread), (2, 2));
        assert_eq!(unread_count(&conn, 1).unwrap(), 2);
        let shown = conversation(&conn, 1, "@BOB@b.example", 10).unwrap();
        assert_eq!(
            shown.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
        assert_eq!(
            mark_read(&conn, 1, "@bob@b.example", shown[1].id).unwrap(),
            2
        );
        assert_eq!(unread_count(&conn, 1).unwrap(), 0);
        // Another owner's rows are theirs alone.
        assert!(conversations(&conn, 2, 10).unwrap().is_empty());
        assert_eq!(get(&conn, 2, shown[0].id).unwrap(), None);
        assert_eq!(
            last_sender(&conn, 1).unwrap().as_deref(),
            Some("@bob@B.example")
        );
    }

    #[test]
    fn an_owner_past_the_bound_loses_their_oldest_copies_only() {
        let conn = db();
        insert(&conn, &new(2, "@alice@a.example", false, "kept"), 3).unwrap();
        for i in 0..5 {
            insert(&conn, &new(1, "@bob@b.example", false, &format!("m{i}")), 3).unwrap();
        }
        let left = conversation(&conn, 1, "@bob@b.example", 10).unwrap();
        assert_eq!(
            left.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            ["m2", "m3", "m4"]
        );
        assert_eq!(
            conversation(&conn, 2, "@alice@a.example", 10)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn settling_marks_a_queued_sent_message_once() {
        let conn = db();
        let id = insert(&conn, &new(1, "@bob@b.example", true, "x"), 10).unwrap();
        let failed = settle(&conn, "act-1-x", Some("no user bob at b.example")).unwrap();
        assert_eq!(failed.as_ref().map(|s| (s.id, s.owner_id)), Some((id, 1)));
        let row = get(&conn, 1, id).unwrap().unwrap();
        assert_eq!(row.state, "failed");
        assert_eq!(row.reason.as_deref(), Some("no user bob at b.example"));
        // Settled already: a second outcome changes nothing.
        assert_eq!(settle(&conn, "act-1-x", None).unwrap(), None);
        assert_eq!(settle(&conn, "no-such-activity", None).unwrap(), None);
    }

    #[test]
    fn ignore_lists_are_per_user_case_blind_and_bounded() {
        let conn = db();
        assert_eq!(
            ignore(&conn, 1, "@Bob@b.example", 1, 2).unwrap(),
            IgnoreOutcome::Added
        );
        assert_eq!(
            ignore(&conn, 1, "@bob@b.example", 2, 2).unwrap(),
            IgnoreOutcome::Already
        );
        assert!(is_ignored(&conn, 1, "@BOB@B.EXAMPLE").unwrap());
        assert!(!is_ignored(&conn, 2, "@bob@b.example").unwrap());
        assert_eq!(
            ignore(&conn, 1, "@c@c.example", 3, 2).unwrap(),
            IgnoreOutcome::Added
        );
        assert_eq!(
            ignore(&conn, 1, "@d@d.example", 4, 2).unwrap(),
            IgnoreOutcome::Full { max: 2 }
        );
        assert_eq!(
            ignores(&conn, 1).unwrap(),
            ["@bob@b.example", "@c@c.example"]
        );
        assert!(unignore(&conn, 1, "@BOB@b.example").unwrap());
        assert!(!unignore(&conn, 1, "@bob@b.example").unwrap());
        assert_eq!(ignores(&conn, 1).unwrap(), ["@c@c.example"]);
    }
}
