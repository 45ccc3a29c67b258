//! Remote catalogs: the files other instances share, in the same `files` table and search
//! index as local ones (a row has a `remote_owner_id` instead of an `owner_id`).
//!
//! Each origin (a peer's domain) has a row in `remote_origins` with how many files it holds
//! here, which [`apply`] bounds, and a pull generation: [`begin_pull`] starts a new one,
//! every file applied is stamped with the current one, and [`finish_pull`] drops the files
//! the pull did not see (unshared while the two instances were apart).
//!
//! The caller (`crate::catalog`) validates files and checks that owners belong to the origin;
//! this module trusts what it is given.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::files::{
    any_record, extension, index_words, last_component, size_token, FileRecord, PageStart,
    LOCAL_ORIGIN, SELECT_ANY,
};
use super::StoreError;

/// A file another instance shares, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRemoteFile {
    /// The owner's nick on the origin.
    pub nick: String,
    /// Hex BLAKE3 of the content.
    pub hash: String,
    pub path: String,
    pub size: u64,
}

/// What applying a batch of remote files changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// New files.
    pub added: usize,
    /// Files at a known path whose content changed.
    pub replaced: usize,
    /// Files known already, as they were.
    pub unchanged: usize,
    /// New files left out because the origin holds its bound of files already.
    pub over_bound: usize,
}

/// The index token of the instance `domain`: 0 for `local_domain`, the id of its
/// `remote_origins` row for a known remote one, `None` for one we hold nothing of.
pub fn origin_token(
    conn: &Connection,
    domain: &str,
    local_domain: &str,
) -> Result<Option<i64>, StoreError> {
    if domain.eq_ignore_ascii_case(local_domain) {
        return Ok(Some(0));
    }
    Ok(conn
        .prepare_cached("SELECT id FROM remote_origins WHERE domain = ?1")?
        .query_row([domain.to_lowercase()], |r| r.get(0))
        .optional()?)
}

/// The origin's row (created if new): its id, files held and current generation.
fn origin(tx: &Transaction<'_>, domain: &str) -> Result<(i64, u64, i64), StoreError> {
    tx.prepare_cached("INSERT OR IGNORE INTO remote_origins (domain) VALUES (?1)")?
        .execute([domain])?;
    Ok(tx
        .prepare_cached("SELECT id, files, generation FROM remote_origins WHERE domain = ?1")?
        .query_row([domain], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64, r.get(2)?))
        })?)
}

/// The id of the owner `nick` of origin `origin_id`, if they have a row.
fn find_owner(tx: &Transaction<'_>, origin_id: i64, nick: &str) -> Result<Option<i64>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT id FROM remote_owners WHERE origin_id = ?1 AND nick_key = ?2")?
        .query_row(params![origin_id, nick.to_lowercase()], |r| r.get(0))
        .optional()?)
}

/// The id of the owner `nick` of origin `origin_id`, created if new.
fn owner(tx: &Transaction<'_>, origin_id: i64, nick: &str) -> Result<i64, StoreError> {
    if let Some(id) = find_owner(tx, origin_id, nick)? {
        return Ok(id);
    }
    tx.prepare_cached("INSERT INTO remote_owners (origin_id, nick, nick_key) VALUES (?1, ?2, ?3)")?
        .execute(params![origin_id, nick, nick.to_lowercase()])?;
    Ok(tx.last_insert_rowid())
}

/// Adds `files` of the instance `domain`, replacing what the same owner had at the same
/// path; at most `bound` files from one origin (past it new files are left out and counted,
/// and no owner row is made for them). Applying the same files again changes nothing but
/// their pull generation.
pub fn apply(
    conn: &mut Connection,
    domain: &str,
    files: &[NewRemoteFile],
    bound: u64,
    now: i64,
) -> Result<Applied, StoreError> {
    let tx = conn.transaction()?;
    let (origin_id, mut held, generation) = origin(&tx, domain)?;
    let mut applied = Applied::default();
    for file in files {
        let owner_id = find_owner(&tx, origin_id, &file.nick)?;
        let old: Option<(i64, String)> = match owner_id {
            Some(owner_id) => tx
                .prepare_cached(
                    "SELECT id, hash FROM files WHERE remote_owner_id = ?1 AND path = ?2",
                )?
                .query_row(params![owner_id, file.path], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
            None => None,
        };
        match (owner_id, old) {
            (_, Some((id, hash))) if hash == file.hash => {
                tx.prepare_cached("UPDATE files SET generation = ?1 WHERE id = ?2")?
                    .execute(params![generation, id])?;
                applied.unchanged += 1;
            }
            (Some(owner_id), Some((id, _))) => {
                delete_file(&tx, id)?;
                insert(&tx, origin_id, owner_id, file, generation, now)?;
                applied.replaced += 1;
            }
            _ if held >= bound => applied.over_bound += 1,
            _ => {
                let owner_id = owner(&tx, origin_id, &file.nick)?;
                insert(&tx, origin_id, owner_id, file, generation, now)?;
                held += 1;
                applied.added += 1;
            }
        }
    }
    set_held(&tx, origin_id, held)?;
    tx.commit()?;
    Ok(applied)
}

fn insert(
    tx: &Transaction<'_>,
    origin_id: i64,
    owner_id: i64,
    file: &NewRemoteFile,
    generation: i64,
    now: i64,
) -> Result<(), StoreError> {
    let size = i64::try_from(file.size).unwrap_or(i64::MAX);
    tx.prepare_cached(
        "INSERT INTO files (remote_owner_id, path, name, size, hash, modified, shared, generation)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)",
    )?
    .execute(params![
        owner_id,
        file.path,
        last_component(&file.path),
        size,
        file.hash,
        now,
        generation
    ])?;
    let id = tx.last_insert_rowid();
    tx.prepare_cached(
        "INSERT INTO files_fts (rowid, words, ext, owner, size, origin)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        id,
        index_words(&file.path),
        extension(&file.path),
        file.nick.to_lowercase(),
        size_token(file.size),
        format!("o{origin_id}")
    ])?;
    debug_assert_ne!(format!("o{origin_id}"), LOCAL_ORIGIN);
    Ok(())
}

/// Removes a file row and its index entry.
fn delete_file(tx: &Transaction<'_>, id: i64) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM files_fts WHERE rowid = ?1")?
        .execute([id])?;
    tx.prepare_cached("DELETE FROM files WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

fn set_held(tx: &Transaction<'_>, origin_id: i64, held: u64) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE remote_origins SET files = ?1 WHERE id = ?2")?
        .execute(params![i64::try_from(held).unwrap_or(i64::MAX), origin_id])?;
    Ok(())
}

/// Drops the owners of origin `origin_id` who hold no file any more.
fn drop_empty_owners(tx: &Transaction<'_>, origin_id: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "DELETE FROM remote_owners WHERE origin_id = ?1
         AND NOT EXISTS (SELECT 1 FROM files WHERE remote_owner_id = remote_owners.id)",
    )?
    .execute([origin_id])?;
    Ok(())
}

/// Removes the files `(hash, path)` of `nick` on `domain` (a file whose content changed since
/// stays). Returns how many were removed.
pub fn unshare(
    conn: &mut Connection,
    domain: &str,
    nick: &str,
    files: &[(String, String)],
) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    let found: Option<(i64, i64, i64)> = tx
        .query_row(
            "SELECT o.id, o.files, ro.id FROM remote_origins o
             JOIN remote_owners ro ON ro.origin_id = o.id
             WHERE o.domain = ?1 AND ro.nick_key = ?2",
            params![domain, nick.to_lowercase()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((origin_id, held, owner_id)) = found else {
        return Ok(0);
    };
    let mut removed = 0;
    for (hash, path) in files {
        let id: Option<i64> = tx
            .prepare_cached(
                "SELECT id FROM files WHERE remote_owner_id = ?1 AND path = ?2 AND hash = ?3",
            )?
            .query_row(params![owner_id, path, hash], |r| r.get(0))
            .optional()?;
        if let Some(id) = id {
            delete_file(&tx, id)?;
            removed += 1;
        }
    }
    set_held(
        &tx,
        origin_id,
        (held.max(0) as u64).saturating_sub(removed as u64),
    )?;
    drop_empty_owners(&tx, origin_id)?;
    tx.commit()?;
    Ok(removed)
}

/// Starts a catalog pull from `domain`: returns its generation, which [`finish_pull`] takes.
pub fn begin_pull(conn: &mut Connection, domain: &str) -> Result<i64, StoreError> {
    let tx = conn.transaction()?;
    let (origin_id, _, generation) = origin(&tx, domain)?;
    tx.execute(
        "UPDATE remote_origins SET generation = ?1 WHERE id = ?2",
        params![generation + 1, origin_id],
    )?;
    tx.commit()?;
    Ok(generation + 1)
}

/// Ends the pull `generation` from `domain`: drops the files from it that neither the pull nor
/// a share applied since the pull began. Does nothing if a later pull has begun. Returns how
/// many files were dropped.
pub fn finish_pull(
    conn: &mut Connection,
    domain: &str,
    generation: i64,
) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    let found: Option<(i64, i64, i64)> = tx
        .query_row(
            "SELECT id, files, generation FROM remote_origins WHERE domain = ?1",
            [domain],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((origin_id, held, current)) = found else {
        return Ok(0);
    };
    if current != generation {
        return Ok(0);
    }
    let stale = origin_files(&tx, origin_id, Some(generation))?;
    for id in &stale {
        delete_file(&tx, *id)?;
    }
    set_held(
        &tx,
        origin_id,
        (held.max(0) as u64).saturating_sub(stale.len() as u64),
    )?;
    drop_empty_owners(&tx, origin_id)?;
    tx.commit()?;
    Ok(stale.len())
}

/// Ids of the files of origin `origin_id` (only those stamped before `older_than`, if given).
fn origin_files(
    tx: &Transaction<'_>,
    origin_id: i64,
    older_than: Option<i64>,
) -> Result<Vec<i64>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT f.id FROM remote_owners ro JOIN files f ON f.remote_owner_id = ro.id
         WHERE ro.origin_id = ?1 AND (?2 IS NULL OR f.generation < ?2)",
    )?;
    let ids = stmt
        .query_map(params![origin_id, older_than], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Forgets everything from `domain` (a blocked peer). Returns how many files were dropped.
pub fn forget(conn: &mut Connection, domain: &str) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    let origin_id: Option<i64> = tx
        .query_row(
            "SELECT id FROM remote_origins WHERE domain = ?1",
            [domain],
            |r| r.get(0),
        )
        .optional()?;
    let Some(origin_id) = origin_id else {
        return Ok(0);
    };
    let ids = origin_files(&tx, origin_id, None)?;
    for id in &ids {
        delete_file(&tx, *id)?;
    }
    // Its owners go with it (ON DELETE CASCADE).
    tx.execute("DELETE FROM remote_origins WHERE id = ?1", [origin_id])?;
    tx.commit()?;
    Ok(ids.len())
}

/// How many files the instance `domain` has here.
pub fn held(conn: &Connection, domain: &str) -> Result<u64, StoreError> {
    let n: Option<i64> = conn
        .query_row(
            "SELECT files FROM remote_origins WHERE domain = ?1",
            [domain],
            |r| r.get(0),
        )
        .optional()?;
    Ok(n.unwrap_or(0).max(0) as u64)
}

/// The remote owner `nick` of `domain` (any case): the id of their row and their nick as
/// the origin spells it.
pub fn owner_by_address(
    conn: &Connection,
    domain: &str,
    nick: &str,
) -> Result<Option<(i64, String)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT ro.id, ro.nick FROM remote_owners ro
             JOIN remote_origins o ON o.id = ro.origin_id
             WHERE o.domain = ?1 AND ro.nick_key = ?2",
        )?
        .query_row(params![domain, nick.to_lowercase()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?)
}

/// One page of a remote owner's files by path: at most `limit`, from `start`.
pub fn list_page(
    conn: &Connection,
    remote_owner_id: i64,
    start: &PageStart,
    limit: usize,
) -> Result<Vec<FileRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = match start {
        PageStart::Offset(n) => conn
            .prepare_cached(&format!(
                "{SELECT_ANY} WHERE f.remote_owner_id = ?1 ORDER BY f.path LIMIT ?2 OFFSET ?3"
            ))?
            .query_map(
                params![
                    remote_owner_id,
                    limit,
                    i64::try_from(*n).unwrap_or(i64::MAX)
                ],
                any_record,
            )?
            .collect::<Result<_, _>>()?,
        PageStart::After(path) => conn
            .prepare_cached(&format!(
                "{SELECT_ANY} WHERE f.remote_owner_id = ?1 AND f.path > ?2 ORDER BY f.path LIMIT ?3"
            ))?
            .query_map(params![remote_owner_id, path, limit], any_record)?
            .collect::<Result<_, _>>()?,
    };
    Ok(rows)
}

/// How many files a remote owner shares.
pub fn count(conn: &Connection, remote_owner_id: i64) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM files WHERE remote_owner_id = ?1")?
        .query_row([remote_owner_id], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}
