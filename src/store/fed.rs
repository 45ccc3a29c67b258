//! Federation state: peers and their delivery schedule, the outbox, and the ids of activities
//! already applied.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;

/// Activities owed to one peer before the oldest are dropped: a peer away for long gets the
/// newest this many, in order, and the drop is logged.
pub const MAX_PENDING_PER_PEER: i64 = 100_000;
/// The pending bound is checked every this many activities (so a peer may briefly hold a
/// little more).
const PENDING_CHECK_EVERY: i64 = 256;
/// How long applied activity ids are remembered, in seconds: longer than any retry schedule
/// (an unavailable peer is retried for weeks at most), so a repeat is always recognised.
pub const SEEN_KEEP_SECS: i64 = 60 * 24 * 3600;
/// Peers stored at most (each gets a delivery worker and a row per activity): the gossip
/// table's bound.
pub const MAX_PEERS: i64 = crate::fed::gossip::MAX_PEERS as i64;
/// Applied activity ids remembered at most; past it the oldest are forgotten first.
pub const MAX_SEEN: i64 = 2_000_000;

/// A peer and its delivery schedule, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRow {
    pub domain: String,
    pub added_at: i64,
    pub last_seen: Option<i64>,
    pub state: String,
    pub failures: i64,
    pub first_failure_ms: Option<i64>,
    pub next_attempt_ms: i64,
    pub catalog_pulled: bool,
}

/// Adds a peer; returns whether it is new.
pub fn add_peer(conn: &Connection, domain: &str, now: i64) -> Result<bool, StoreError> {
    add_peer_bounded(conn, domain, now, MAX_PEERS)
}

/// [`add_peer`] with the bound passed in (tests).
fn add_peer_bounded(
    conn: &Connection,
    domain: &str,
    now: i64,
    max: i64,
) -> Result<bool, StoreError> {
    // One statement: the count and the insert cannot be split by another writer.
    let n = conn.execute(
        "INSERT OR IGNORE INTO peers (domain, added_at)
         SELECT ?1, ?2 WHERE (SELECT count(*) FROM peers) < ?3",
        params![domain, now, max],
    )?;
    if n == 0 && !is_peer(conn, domain)? {
        return Err(StoreError::TooManyPeers { max });
    }
    Ok(n == 1)
}

/// Whether `domain` is in the peer table.
pub fn is_peer(conn: &Connection, domain: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM peers WHERE domain = ?1",
            [domain],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Forgets a peer and what it was owed.
pub fn remove_peer(conn: &Connection, domain: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM peers WHERE domain = ?1", [domain])?;
    Ok(())
}

pub fn peers(conn: &Connection) -> Result<Vec<PeerRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT domain, added_at, last_seen, state, failures, first_failure_ms,
                next_attempt_ms, catalog_pulled
         FROM peers ORDER BY domain",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(PeerRow {
            domain: r.get(0)?,
            added_at: r.get(1)?,
            last_seen: r.get(2)?,
            state: r.get(3)?,
            failures: r.get(4)?,
            first_failure_ms: r.get(5)?,
            next_attempt_ms: r.get(6)?,
            catalog_pulled: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Stores a peer's schedule after an attempt; `seen` is set after a success.
pub fn set_schedule(
    conn: &Connection,
    domain: &str,
    state: &str,
    failures: i64,
    first_failure_ms: Option<i64>,
    next_attempt_ms: i64,
    seen: Option<i64>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE peers SET state = ?2, failures = ?3, first_failure_ms = ?4, next_attempt_ms = ?5,
                last_seen = COALESCE(?6, last_seen)
         WHERE domain = ?1",
        params![
            domain,
            state,
            failures,
            first_failure_ms,
            next_attempt_ms,
            seen
        ],
    )?;
    Ok(())
}

pub fn set_catalog_pulled(conn: &Connection, domain: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE peers SET catalog_pulled = 1 WHERE domain = ?1",
        [domain],
    )?;
    Ok(())
}

/// Puts an activity in the outbox, owed to every peer; returns the peers it is owed to.
/// Peers owed more than [`MAX_PENDING_PER_PEER`] lose their oldest.
pub fn enqueue(
    conn: &mut Connection,
    activity_id: &str,
    envelope: &str,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    enqueue_bounded(
        conn,
        activity_id,
        envelope,
        now,
        MAX_PENDING_PER_PEER,
        PENDING_CHECK_EVERY,
    )
}

/// [`enqueue`] with the pending bound and its check interval passed in.
fn enqueue_bounded(
    conn: &mut Connection,
    activity_id: &str,
    envelope: &str,
    now: i64,
    max_pending: i64,
    check_every: i64,
) -> Result<Vec<String>, StoreError> {
    let tx = conn.transaction()?;
    let seq = insert_outbox(&tx, activity_id, envelope, now)?;
    tx.execute(
        "INSERT INTO deliveries (peer, seq) SELECT domain, ?1 FROM peers",
        [seq],
    )?;
    let owed: Vec<String> = {
        let mut stmt = tx.prepare_cached("SELECT peer FROM deliveries WHERE seq = ?1")?;
        let rows = stmt.query_map([seq], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    // Over the bound: drop the oldest owed (a rare, logged event). Counting costs a scan of
    // what a peer is owed, so it runs every PENDING_CHECK_EVERY activities.
    if seq % check_every.max(1) == 0 {
        let mut dropped_any = false;
        for peer in &owed {
            let excess = owed_count(&tx, peer)? - max_pending;
            if excess > 0 {
                dropped_any = true;
                // A private message among the dropped failed: its sender is told.
                tx.execute(
                    "UPDATE messages SET state = 'failed',
                       reason = 'dropped: ' || ?1 || ' was owed too many activities'
                     WHERE outgoing = 1 AND state = 'queued' AND activity_id IN
                       (SELECT o.activity_id FROM deliveries d JOIN outbox o ON o.seq = d.seq
                        WHERE d.peer = ?1 ORDER BY d.seq LIMIT ?2)",
                    params![peer, excess],
                )?;
                tx.execute(
                    "DELETE FROM deliveries WHERE peer = ?1 AND seq IN
                       (SELECT seq FROM deliveries WHERE peer = ?1 ORDER BY seq LIMIT ?2)",
                    params![peer, excess],
                )?;
                tracing::warn!(%peer, dropped = excess, "peer owed more than {max_pending} activities: dropped its oldest");
            }
        }
        if dropped_any {
            // Activities no peer is owed any more leave the outbox.
            tx.execute(
                "DELETE FROM outbox WHERE seq < ?1
                   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = outbox.seq)",
                [seq],
            )?;
        }
    }
    if owed.is_empty() {
        tx.execute("DELETE FROM outbox WHERE seq = ?1", [seq])?;
    }
    tx.commit()?;
    Ok(owed)
}

/// Puts an activity in the outbox owed to `peer` alone (a private message goes to its
/// recipient's home and nowhere else). `peer` must be in the peer table.
pub fn enqueue_to(
    conn: &Connection,
    activity_id: &str,
    envelope: &str,
    now: i64,
    peer: &str,
) -> Result<(), StoreError> {
    let seq = insert_outbox(conn, activity_id, envelope, now)?;
    conn.execute(
        "INSERT INTO deliveries (peer, seq) VALUES (?1, ?2)",
        params![peer, seq],
    )?;
    Ok(())
}

/// Stores an activity's envelope in the outbox; returns its sequence number.
fn insert_outbox(
    conn: &Connection,
    activity_id: &str,
    envelope: &str,
    now: i64,
) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO outbox (activity_id, envelope, created_at) VALUES (?1, ?2, ?3)",
        params![activity_id, envelope, now],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Records that `peer` accepted activity `seq` (`failure` is `None`) or refused it for good,
/// and settles the private message it carried, if any. The activity leaves the outbox once
/// every peer has it.
pub fn settle(
    conn: &mut Connection,
    peer: &str,
    seq: i64,
    failure: Option<&str>,
) -> Result<Option<super::messages::Settled>, StoreError> {
    let tx = conn.transaction()?;
    let activity_id: Option<String> = tx
        .query_row(
            "SELECT activity_id FROM outbox WHERE seq = ?1",
            [seq],
            |r| r.get(0),
        )
        .optional()?;
    let settled = match activity_id {
        Some(id) => super::messages::settle(&tx, &id, failure)?,
        None => None,
    };
    delivered(&tx, peer, seq)?;
    tx.commit()?;
    Ok(settled)
}

/// The oldest `limit` activities owed to `peer`, in order: (seq, envelope).
pub fn owed(conn: &Connection, peer: &str, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.seq, o.envelope FROM deliveries d JOIN outbox o ON o.seq = d.seq
         WHERE d.peer = ?1 ORDER BY d.seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![peer, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many activities `peer` is owed.
pub fn owed_count(conn: &Connection, peer: &str) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM deliveries WHERE peer = ?1",
        [peer],
        |r| r.get(0),
    )?)
}

/// Records that `peer` accepted activity `seq`; the activity leaves the outbox once every
/// peer has it.
pub fn delivered(conn: &Connection, peer: &str, seq: i64) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM deliveries WHERE peer = ?1 AND seq = ?2",
        params![peer, seq],
    )?;
    conn.execute(
        "DELETE FROM outbox WHERE seq = ?1
           AND NOT EXISTS (SELECT 1 FROM deliveries WHERE seq = ?1)",
        [seq],
    )?;
    Ok(())
}

/// Remembers an applied activity id; returns false if it was seen before (drop it).
pub fn first_sight(conn: &Connection, activity_id: &str, now: i64) -> Result<bool, StoreError> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO inbox_seen (activity_id, received_at) VALUES (?1, ?2)",
        params![activity_id, now],
    )?;
    Ok(n == 1)
}

/// Forgets that `activity_id` was seen: applying it failed in a way a retry may mend.
pub fn unsee(conn: &Connection, activity_id: &str) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM inbox_seen WHERE activity_id = ?1",
        [activity_id],
    )?;
    Ok(())
}

/// Forgets applied ids older than [`SEEN_KEEP_SECS`], and the oldest past [`MAX_SEEN`].
pub fn prune_seen(conn: &Connection, now: i64) -> Result<usize, StoreError> {
    prune_seen_bounded(conn, now, MAX_SEEN)
}

/// [`prune_seen`] keeping at most `max_seen` ids.
fn prune_seen_bounded(conn: &Connection, now: i64, max_seen: i64) -> Result<usize, StoreError> {
    let old = conn.execute(
        "DELETE FROM inbox_seen WHERE received_at < ?1",
        [now - SEEN_KEEP_SECS],
    )?;
    let excess = conn.execute(
        "DELETE FROM inbox_seen WHERE activity_id IN (
            SELECT activity_id FROM inbox_seen ORDER BY received_at
            LIMIT MAX(0, (SELECT COUNT(*) FROM inbox_seen) - ?1))",
        [max_seen],
    )?;
    Ok(old + excess)
}

/// The activity with this id in the outbox, if still there.
pub fn outbox_seq(conn: &Connection, activity_id: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT seq FROM outbox WHERE activity_id = ?1",
            [activity_id],
            |r| r.get(0),
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_gets_each_activity_once_in_order() {
        let mut conn = crate::store::open_in_memory();
        add_peer(&conn, "b.test", 0).unwrap();
        add_peer(&conn, "c.test", 0).unwrap();
        assert!(!add_peer(&conn, "b.test", 1).unwrap(), "added once");
        for i in 0..3 {
            let owed_to = enqueue(&mut conn, &format!("id{i}"), &format!("e{i}"), 0).unwrap();
            assert_eq!(owed_to, ["b.test", "c.test"]);
        }
        let b = owed(&conn, "b.test", 10).unwrap();
        let bodies: Vec<_> = b.iter().map(|(_, e)| e.as_str()).collect();
        assert_eq!(bodies, ["e0", "e1", "e2"]);
        delivered(&conn, "b.test", b[0].0).unwrap();
        assert_eq!(owed_count(&conn, "b.test").unwrap(), 2);
        assert!(outbox_seq(&conn, "id0").unwrap().is_some(), "c still owed");
        delivered(&conn, "c.test", b[0].0).unwrap();
        assert!(
            outbox_seq(&conn, "id0").unwrap().is_none(),
            "everyone has it"
        );
        remove_peer(&conn, "c.test").unwrap();
        assert_eq!(owed_count(&conn, "c.test").unwrap(), 0);
    }

    #[test]
    fn the_peer_table_is_bounded_and_a_known_peer_is_still_known() {
        let conn = crate::store::open_in_memory();
        for i in 0..3 {
            assert!(add_peer_bounded(&conn, &format!("p{i}.test"), 0, 3).unwrap());
        }
        let err = add_peer_bounded(&conn, "one-more.test", 0, 3).unwrap_err();
        assert!(err.to_string().contains("full (3 peers)"), "{err}");
        assert!(!is_peer(&conn, "one-more.test").unwrap());
        assert!(
            !add_peer_bounded(&conn, "p1.test", 1, 3).unwrap(),
            "known, not new"
        );
        remove_peer(&conn, "p0.test").unwrap();
        assert!(add_peer_bounded(&conn, "one-more.test", 2, 3).unwrap());
        assert_eq!(MAX_PEERS, 4096);
    }

    #[test]
    fn an_id_unseen_after_a_failed_apply_is_new_again() {
        let conn = crate::store::open_in_memory();
        assert!(first_sight(&conn, "id1", 0).unwrap());
        assert!(!first_sight(&conn, "id1", 1).unwrap(), "a repeat");
        unsee(&conn, "id1").unwrap();
        assert!(
            first_sight(&conn, "id1", 2).unwrap(),
            "the retry is applied"
        );
    }

    #[test]
    fn without_peers_nothing_stays_in_the_outbox() {
        let mut conn = crate::store::open_in_memory();
        assert!(enqueue(&mut conn, "id", "e", 0).unwrap().is_empty());
        assert!(outbox_seq(&conn, "id").unwrap().is_none());
    }

    #[test]
    fn an_activity_id_is_applied_once() {
        let conn = crate::store::open_in_memory();
        assert!(first_sight(&conn, "x", 0).unwrap());
        assert!(!first_sight(&conn, "x", 5).unwrap());
        assert_eq!(prune_seen(&conn, SEEN_KEEP_SECS + 1).unwrap(), 1);
        assert!(first_sight(&conn, "x", SEEN_KEEP_SECS + 2).unwrap());
    }

    #[test]
    fn a_peer_owed_more_than_the_bound_loses_its_oldest_and_keeps_the_order() {
        let mut conn = crate::store::open_in_memory();
        add_peer(&conn, "b.test", 0).unwrap();
        add_peer(&conn, "c.test", 0).unwrap();
        // c keeps up; b is away.
        for i in 0..12 {
            enqueue_bounded(&mut conn, &format!("id{i}"), &format!("e{i}"), i, 5, 4).unwrap();
            for (seq, _) in owed(&conn, "c.test", 10).unwrap() {
                delivered(&conn, "c.test", seq).unwrap();
            }
        }
        // Checked at the 4th, 8th and 12th activity: b keeps the newest 5, in order.
        let b: Vec<String> = owed(&conn, "b.test", 100)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        assert_eq!(b, ["e7", "e8", "e9", "e10", "e11"]);
        assert_eq!(owed_count(&conn, "c.test").unwrap(), 0);
        // The dropped activities left the outbox (nobody is owed them), the kept ones did not.
        assert!(outbox_seq(&conn, "id6").unwrap().is_none());
        assert!(outbox_seq(&conn, "id7").unwrap().is_some());
        // Between checks a peer may briefly hold a little more, never more than a check's worth.
        enqueue_bounded(&mut conn, "id12", "e12", 12, 5, 4).unwrap();
        assert_eq!(owed_count(&conn, "b.test").unwrap(), 6);
    }

    #[test]
    fn past_the_applied_id_bound_the_oldest_are_forgotten_first() {
        let conn = crate::store::open_in_memory();
        for i in 0..6 {
            assert!(first_sight(&conn, &format!("id{i}"), 100 + i).unwrap());
        }
        assert_eq!(prune_seen_bounded(&conn, 110, 4).unwrap(), 2);
        // The newest four are still recognised as repeats...
        for i in 2..6 {
            assert!(
                !first_sight(&conn, &format!("id{i}"), 111).unwrap(),
                "id{i}"
            );
        }
        // ...the two oldest were forgotten.
        for i in 0..2 {
            assert!(first_sight(&conn, &format!("id{i}"), 111).unwrap(), "id{i}");
        }
        // Under the bound, nothing young is forgotten.
        assert_eq!(prune_seen_bounded(&conn, 112, 10).unwrap(), 0);
    }
}
