//! The library catalog: every file in every user's `library/`, its content hash, and whether
//! it is shared; with a full-text index (FTS5) over the words of names and folders.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileRecord {
    pub id: i64,
    pub owner_id: i64,
    pub owner_nick: String,
    /// Path inside the owner's `library/`, `/`-separated.
    pub path: String,
    pub name: String,
    pub size: u64,
    /// Hex BLAKE3 of the content.
    pub hash: String,
    pub modified: i64,
    pub shared: bool,
    /// The domain of the instance the file lives on, for a remote file (then `owner_id` is 0
    /// and `owner_nick` is the nick there); `None` for a local file.
    pub origin: Option<String>,
}

/// Which file on disk a catalog row describes: read with `fstat` from the handle that was
/// renamed into `library/`, and compared with the handle a download opens before it sends a
/// byte. A new upload over the path is a new inode; an edit in place changes the size or the
/// modification time (to the file system's timestamp grain; the hash checked while the bytes
/// are sent is the last guard). The change time is left out: renaming a file inside the
/// library changes it without touching the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
}

impl FileIdentity {
    /// The identity of an open file (or of a path), from its metadata.
    pub fn of(meta: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
        }
    }
}

const SELECT: &str =
    "SELECT f.id, f.owner_id, u.nick, f.path, f.name, f.size, f.hash, f.modified, f.shared
     FROM files f JOIN users u ON u.id = f.owner_id";

/// [`SELECT`] and the identity columns after its own (9: device, 10: inode, 11: mtime).
const SELECT_WITH_IDENTITY: &str =
    "SELECT f.id, f.owner_id, u.nick, f.path, f.name, f.size, f.hash, f.modified, f.shared,
            f.disk_dev, f.disk_ino, f.disk_mtime_ns
     FROM files f JOIN users u ON u.id = f.owner_id";

fn record(r: &Row<'_>) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        id: r.get(0)?,
        owner_id: r.get(1)?,
        owner_nick: r.get(2)?,
        path: r.get(3)?,
        name: r.get(4)?,
        size: r.get::<_, i64>(5)?.max(0) as u64,
        hash: r.get(6)?,
        modified: r.get(7)?,
        shared: r.get(8)?,
        origin: None,
    })
}

/// Like [`SELECT`], for queries that may return remote files as well; read with
/// [`any_record`].
pub(super) const SELECT_ANY: &str =
    "SELECT f.id, COALESCE(f.owner_id, 0), COALESCE(u.nick, ro.nick), f.path, f.name,
            f.size, f.hash, f.modified, f.shared, o.domain
     FROM files f LEFT JOIN users u ON u.id = f.owner_id
     LEFT JOIN remote_owners ro ON ro.id = f.remote_owner_id
     LEFT JOIN remote_origins o ON o.id = ro.origin_id";

/// A row of [`SELECT_ANY`]: a local or a remote file.
pub(super) fn any_record(r: &Row<'_>) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        origin: r.get(9)?,
        ..record(r)?
    })
}

/// The words indexed for a path: every component, split on common separators as well, so
/// `Music/Miles_Davis/So-What.flac` is found by `miles`, `davis`, `so`, `what` and `flac`.
pub fn index_words(path: &str) -> String {
    let mut words = path.replace('/', " ");
    words.push(' ');
    words.push_str(&path.replace(['/', '_', '-', '.', '(', ')', '[', ']'], " "));
    words
}

/// The lowercase extension of a path's last component (`""` when it has none).
pub fn extension(path: &str) -> String {
    match last_component(path).rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_lowercase(),
        _ => String::new(),
    }
}

/// The size class of a size: its bit length (0 for 0 bytes, 21 for 1 to 2 MiB).
fn size_class(size: u64) -> u32 {
    u64::BITS - size.leading_zeros()
}

/// The index's `size` column: `s` and the size class.
pub fn size_token(size: u64) -> String {
    format!("s{}", size_class(size))
}

/// The index's `origin` column of a local file; a remote file's is `o` and the id of its
/// `remote_origins` row.
pub(super) const LOCAL_ORIGIN: &str = "o0";

/// Adds a file to the full-text index (its row must exist in `files`).
fn index_file(
    conn: &Connection,
    id: i64,
    owner_id: i64,
    path: &str,
    size: u64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO files_fts (rowid, words, ext, owner, size, origin)
         VALUES (?1, ?2, ?3, (SELECT nick_key FROM users WHERE id = ?4), ?5, ?6)",
    )?
    .execute(params![
        id,
        index_words(path),
        extension(path),
        owner_id,
        size_token(size),
        LOCAL_ORIGIN
    ])?;
    Ok(())
}

pub(super) fn last_component(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Records a complete file at `path`, replacing what was there. A replaced file keeps its
/// shared flag only if its content did not change. `identity` is where the bytes are on disk
/// (`None` only in tests and imports: such a file is hashed in full before it is sent).
pub fn upsert(
    conn: &mut Connection,
    owner_id: i64,
    path: &str,
    size: u64,
    hash: &str,
    modified: i64,
    identity: Option<&FileIdentity>,
) -> Result<i64, StoreError> {
    let tx = conn.transaction()?;
    let old: Option<(String, bool)> = tx
        .query_row(
            "SELECT hash, shared FROM files WHERE owner_id = ?1 AND path = ?2",
            params![owner_id, path],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let keep_shared = old.is_some_and(|(h, shared)| shared && h == hash);
    delete_at(&tx, owner_id, path)?;
    tx.execute(
        "INSERT INTO files (owner_id, path, name, size, hash, modified, shared)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            owner_id,
            path,
            last_component(path),
            size as i64,
            hash,
            modified,
            keep_shared
        ],
    )?;
    let id = tx.last_insert_rowid();
    if let Some(identity) = identity {
        set_identity(&tx, id, identity)?;
    }
    index_file(&tx, id, owner_id, path, size)?;
    tx.commit()?;
    Ok(id)
}

fn set_identity(conn: &Connection, id: i64, identity: &FileIdentity) -> Result<usize, StoreError> {
    // SQLite integers are signed: device and inode numbers are stored as their bit patterns.
    Ok(conn
        .prepare_cached(
            "UPDATE files SET disk_dev = ?1, disk_ino = ?2, disk_mtime_ns = ?3
             WHERE id = ?4 AND size = ?5",
        )?
        .execute(params![
            identity.dev as i64,
            identity.ino as i64,
            identity.mtime_ns,
            id,
            identity.size as i64
        ])?)
}

/// Records the identity of a file whose bytes were just proven (by hash) to be those of row
/// `id`, if that row still holds `hash`. Returns whether it did.
pub fn record_identity(
    conn: &Connection,
    id: i64,
    hash: &str,
    identity: &FileIdentity,
) -> Result<bool, StoreError> {
    let still: Option<i64> = conn
        .query_row(
            "SELECT id FROM files WHERE id = ?1 AND hash = ?2",
            params![id, hash],
            |r| r.get(0),
        )
        .optional()?;
    if still.is_none() {
        return Ok(false);
    }
    Ok(set_identity(conn, id, identity)? == 1)
}

/// The owner's file at `path` if it is shared now, with its recorded identity on disk
/// (`None` if it was catalogued before identities were recorded).
pub fn shared_at(
    conn: &Connection,
    owner_id: i64,
    path: &str,
) -> Result<Option<(FileRecord, Option<FileIdentity>)>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "{SELECT_WITH_IDENTITY} WHERE f.owner_id = ?1 AND f.path = ?2 AND f.shared = 1"
        ))?
        .query_row(params![owner_id, path], |r| {
            let file = record(r)?;
            let dev: Option<i64> = r.get(9)?;
            let ino: Option<i64> = r.get(10)?;
            let mtime_ns: Option<i64> = r.get(11)?;
            let identity = match (dev, ino, mtime_ns) {
                (Some(dev), Some(ino), Some(mtime_ns)) => Some(FileIdentity {
                    dev: dev as u64,
                    ino: ino as u64,
                    size: file.size,
                    mtime_ns,
                }),
                _ => None,
            };
            Ok((file, identity))
        })
        .optional()?)
}

/// Removes the catalog entry (and its index entry) of the owner's file at `path`, if any;
/// returns whether there was one.
fn delete_at(conn: &Connection, owner_id: i64, path: &str) -> Result<bool, StoreError> {
    let id: Option<i64> = conn
        .query_row(
            "SELECT id FROM files WHERE owner_id = ?1 AND path = ?2",
            params![owner_id, path],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = id {
        conn.execute("DELETE FROM files_fts WHERE rowid = ?1", [id])?;
        conn.execute("DELETE FROM files WHERE id = ?1", [id])?;
    }
    Ok(id.is_some())
}

/// Forgets the file at `path` (a file removed from the library).
pub fn remove(conn: &mut Connection, owner_id: i64, path: &str) -> Result<bool, StoreError> {
    let tx = conn.transaction()?;
    let removed = delete_at(&tx, owner_id, path)?;
    tx.commit()?;
    Ok(removed)
}

/// Follows a rename of a file or a whole folder inside the library.
pub fn rename(
    conn: &mut Connection,
    owner_id: i64,
    from: &str,
    to: &str,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let moved: Vec<(i64, String, u64)> = {
        let mut stmt = tx.prepare(
            "SELECT id, path, size FROM files WHERE owner_id = ?1 AND (path = ?2 OR substr(path, 1, length(?2) + 1) = ?2 || '/')",
        )?;
        let rows = stmt.query_map(params![owner_id, from], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, path, size) in moved {
        let new_path = format!("{to}{}", &path[from.len()..]);
        // A file renamed over another replaces it.
        delete_at(&tx, owner_id, &new_path)?;
        tx.execute(
            "UPDATE files SET path = ?1, name = ?2 WHERE id = ?3",
            params![new_path, last_component(&new_path), id],
        )?;
        tx.execute("DELETE FROM files_fts WHERE rowid = ?1", [id])?;
        index_file(&tx, id, owner_id, &new_path, size)?;
    }
    tx.commit()?;
    Ok(())
}

/// A user's files, by path.
pub fn list(conn: &Connection, owner_id: i64) -> Result<Vec<FileRecord>, StoreError> {
    let mut stmt = conn.prepare(&format!("{SELECT} WHERE f.owner_id = ?1 ORDER BY f.path"))?;
    let rows = stmt.query_map([owner_id], record)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Where a page of a listing starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageStart {
    /// After skipping this many files (`--page N`).
    Offset(usize),
    /// Right after this path (`/more`, continuing the page that ended there).
    After(String),
}

/// One page of a user's files by path (only the shared ones if `shared_only`): at most
/// `limit`, from `start`. Reads only those rows, walking an index on (owner, [shared,] path).
pub fn list_page(
    conn: &Connection,
    owner_id: i64,
    shared_only: bool,
    start: &PageStart,
    limit: usize,
) -> Result<Vec<FileRecord>, StoreError> {
    let shared = if shared_only { "AND f.shared = 1" } else { "" };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Two statements rather than `(?2 IS NULL OR path > ?2)`, which would hide the range
    // from the planner and walk the owner's files from the first.
    let rows = match start {
        PageStart::Offset(n) => {
            let offset = i64::try_from(*n).unwrap_or(i64::MAX);
            conn.prepare_cached(&format!(
                "{SELECT} WHERE f.owner_id = ?1 {shared} ORDER BY f.path LIMIT ?2 OFFSET ?3"
            ))?
            .query_map(params![owner_id, limit, offset], record)?
            .collect::<Result<_, _>>()?
        }
        PageStart::After(path) => conn
            .prepare_cached(&format!(
                "{SELECT} WHERE f.owner_id = ?1 {shared} AND f.path > ?2 ORDER BY f.path LIMIT ?3"
            ))?
            .query_map(params![owner_id, path, limit], record)?
            .collect::<Result<_, _>>()?,
    };
    Ok(rows)
}

/// What a user's library holds, counted by the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub files: u64,
    pub bytes: u64,
    pub shared: u64,
}

/// The user's files, bytes and shared files.
pub fn totals(conn: &Connection, owner_id: i64) -> Result<Totals, StoreError> {
    let (files, bytes, shared): (i64, i64, i64) = conn
        .prepare_cached(
            "SELECT count(*), COALESCE(SUM(size), 0), COALESCE(SUM(shared), 0)
             FROM files WHERE owner_id = ?1",
        )?
        .query_row([owner_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(Totals {
        files: files.max(0) as u64,
        bytes: bytes.max(0) as u64,
        shared: shared.max(0) as u64,
    })
}

/// How many files the user shares.
pub fn count_shared(conn: &Connection, owner_id: i64) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM files WHERE owner_id = ?1 AND shared = 1")?
        .query_row([owner_id], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// Sets the shared flag of the files with these ids (all the owner's).
pub fn set_shared(
    conn: &mut Connection,
    owner_id: i64,
    ids: &[i64],
    shared: bool,
) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    let mut changed = 0;
    {
        let mut stmt =
            tx.prepare("UPDATE files SET shared = ?1 WHERE id = ?2 AND owner_id = ?3")?;
        for id in ids {
            changed += stmt.execute(params![shared, id, owner_id])?;
        }
    }
    tx.commit()?;
    Ok(changed)
}

/// Shared files, local or remote, whose hash starts with `prefix` (lowercase hex), at most
/// `limit`.
pub fn shared_by_hash_prefix(
    conn: &Connection,
    prefix: &str,
    limit: usize,
) -> Result<Vec<FileRecord>, StoreError> {
    let upper = format!("{prefix}g"); // 'g' sorts after every hex digit
    let mut stmt = conn.prepare(&format!(
        "{SELECT_ANY} WHERE f.hash >= ?1 AND f.hash < ?2 AND f.shared = 1 ORDER BY f.hash, f.id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![prefix, upper, limit as i64], any_record)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A local shared file with content `hash` (the first catalogued): its owner and path, for
/// sending it to another instance. Remote rows never match (they have no owner here).
pub fn local_shared_by_hash(
    conn: &Connection,
    hash: &str,
) -> Result<Option<(i64, String)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT owner_id, path FROM files
             WHERE hash = ?1 AND shared = 1 AND owner_id IS NOT NULL ORDER BY id LIMIT 1",
        )?
        .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// A local file as [`local_files_page`] walks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// The catalog row: the cursor of the next page.
    pub row: i64,
    pub owner_id: i64,
    /// Path inside the owner's `library/`.
    pub path: String,
    /// Hex BLAKE3 of the content.
    pub hash: String,
    pub size: u64,
}

/// Local files (shared or not) by row after `after`, at most `limit`: for walking every
/// local file in pages.
pub fn local_files_page(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<Vec<LocalFile>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn
        .prepare_cached(
            "SELECT id, owner_id, path, hash, size FROM files
             WHERE owner_id IS NOT NULL AND id > ?1 ORDER BY id LIMIT ?2",
        )?
        .query_map(params![after, limit], |r| {
            Ok(LocalFile {
                row: r.get(0)?,
                owner_id: r.get(1)?,
                path: r.get(2)?,
                hash: r.get(3)?,
                size: r.get::<_, i64>(4)?.max(0) as u64,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Which of `hashes` no local file (shared or not) has: their outboards serve nothing.
pub fn hashes_without_local_file(
    conn: &Connection,
    hashes: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM files WHERE hash = ?1 AND owner_id IS NOT NULL)",
    )?;
    let mut orphans = Vec::new();
    for hash in hashes {
        let held: bool = stmt.query_row([hash], |r| r.get(0))?;
        if !held {
            orphans.push(hash.clone());
        }
    }
    Ok(orphans)
}

/// Local shared files by id, after id `after`: at most `limit`, walking the partial index
/// `files_local_shared` (what the catalog endpoint pages through).
pub fn local_shared_page(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<Vec<FileRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE f.shared = 1 AND f.owner_id IS NOT NULL AND f.id > ?1
             ORDER BY f.id LIMIT ?2"
        ))?
        .query_map(params![after, limit], record)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// How many files local users share.
pub fn count_local_shared(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM files WHERE shared = 1 AND owner_id IS NOT NULL")?
        .query_row([], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// Bytes a user's library holds according to the catalog.
pub fn usage(conn: &Connection, owner_id: i64) -> Result<u64, StoreError> {
    let total: i64 = conn.query_row(
        "SELECT COALESCE(SUM(size), 0) FROM files WHERE owner_id = ?1",
        [owner_id],
        |r| r.get(0),
    )?;
    Ok(total.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::users::{authenticate, AuthOutcome};

    fn user(conn: &mut Connection, nick: &str) -> i64 {
        match authenticate(conn, nick, &format!("SHA256:{nick}"), "k", 0).unwrap() {
            AuthOutcome::Claimed { user_id, .. } => user_id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn upsert_rename_remove_keep_the_index_in_step() {
        let mut conn = crate::store::open_in_memory();
        let alice = user(&mut conn, "alice");
        upsert(&mut conn, alice, "Music/So_What.flac", 10, "aa", 1, None).unwrap();
        upsert(&mut conn, alice, "Music/Blue.flac", 20, "bb", 1, None).unwrap();
        let matches = |conn: &Connection, q: &str| -> i64 {
            conn.query_row(
                "SELECT count(*) FROM files_fts WHERE files_fts MATCH ?1",
                [q],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(matches(&conn, "what"), 1);
        assert_eq!(matches(&conn, "music"), 2);
        rename(&mut conn, alice, "Music", "Jazz").unwrap();
        assert_eq!(matches(&conn, "music"), 0);
        assert_eq!(matches(&conn, "jazz"), 2);
        let paths: Vec<String> = list(&conn, alice)
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(paths, ["Jazz/Blue.flac", "Jazz/So_What.flac"]);
        assert!(remove(&mut conn, alice, "Jazz/Blue.flac").unwrap());
        assert_eq!(matches(&conn, "blue"), 0);
        assert_eq!(usage(&conn, alice).unwrap(), 10);
    }

    #[test]
    fn replacing_a_file_with_new_content_unshares_it() {
        let mut conn = crate::store::open_in_memory();
        let alice = user(&mut conn, "alice");
        let id = upsert(&mut conn, alice, "a.txt", 1, "aa", 1, None).unwrap();
        set_shared(&mut conn, alice, &[id], true).unwrap();
        upsert(&mut conn, alice, "a.txt", 1, "aa", 2, None).unwrap();
        assert!(
            list(&conn, alice).unwrap()[0].shared,
            "same content stays shared"
        );
        upsert(&mut conn, alice, "a.txt", 2, "cc", 3, None).unwrap();
        assert!(
            !list(&conn, alice).unwrap()[0].shared,
            "new content must be shared again"
        );
    }

    #[test]
    fn pages_walk_the_library_by_path_without_overlap() {
        let mut conn = crate::store::open_in_memory();
        let alice = user(&mut conn, "alice");
        let bob = user(&mut conn, "bob");
        let files: Vec<(String, bool)> =
            (0..250).map(|i| (format!("f{i:03}"), i % 5 == 0)).collect();
        insert_many(
            &mut conn,
            alice,
            files
                .iter()
                .map(|(p, shared)| (p.as_str(), 1, "h", *shared)),
            0,
        )
        .unwrap();
        upsert(&mut conn, bob, "bob's", 1, "b", 0, None).unwrap();
        let paths =
            |page: Vec<FileRecord>| -> Vec<String> { page.into_iter().map(|f| f.path).collect() };
        let first = paths(list_page(&conn, alice, false, &PageStart::Offset(0), 100).unwrap());
        let third = paths(list_page(&conn, alice, false, &PageStart::Offset(200), 100).unwrap());
        assert_eq!((first.len(), third.len()), (100, 50));
        assert_eq!((first[0].as_str(), third[49].as_str()), ("f000", "f249"));
        // Continuing after a path gives what the offset gives.
        let after = paths(
            list_page(
                &conn,
                alice,
                false,
                &PageStart::After(first[99].clone()),
                100,
            )
            .unwrap(),
        );
        let second = paths(list_page(&conn, alice, false, &PageStart::Offset(100), 100).unwrap());
        assert_eq!(after, second);
        assert_eq!(after[0], "f100");
        let shared = list_page(&conn, alice, true, &PageStart::Offset(0), 100).unwrap();
        assert_eq!(shared.len(), 50);
        assert!(shared.iter().all(|f| f.shared && f.owner_id == alice));
        let beyond = list_page(&conn, alice, true, &PageStart::Offset(usize::MAX), 100).unwrap();
        assert!(beyond.is_empty());
        assert_eq!(
            totals(&conn, alice).unwrap(),
            Totals {
                files: 250,
                bytes: 250,
                shared: 50
            }
        );
        assert_eq!(count_shared(&conn, alice).unwrap(), 50);
        assert_eq!(count_shared(&conn, bob).unwrap(), 0);
    }

    #[test]
    fn a_shared_file_is_found_with_its_identity_and_only_while_shared() {
        let mut conn = crate::store::open_in_memory();
        let alice = user(&mut conn, "alice");
        let identity = FileIdentity {
            dev: u64::MAX - 1,
            ino: 42,
            size: 3,
            mtime_ns: 1_700_000_000_123_456_789,
        };
        let id = upsert(&mut conn, alice, "a.txt", 3, "aa", 1, Some(&identity)).unwrap();
        assert!(
            shared_at(&conn, alice, "a.txt").unwrap().is_none(),
            "not shared yet"
        );
        set_shared(&mut conn, alice, &[id], true).unwrap();
        let (file, found) = shared_at(&conn, alice, "a.txt").unwrap().unwrap();
        assert_eq!((file.id, found), (id, Some(identity)));
        set_shared(&mut conn, alice, &[id], false).unwrap();
        assert!(
            shared_at(&conn, alice, "a.txt").unwrap().is_none(),
            "unshared"
        );

        // A file catalogued without an identity gets one once its bytes are proven.
        let old = upsert(&mut conn, alice, "b.txt", 3, "bb", 1, None).unwrap();
        set_shared(&mut conn, alice, &[old], true).unwrap();
        assert_eq!(shared_at(&conn, alice, "b.txt").unwrap().unwrap().1, None);
        assert!(!record_identity(&conn, old, "other hash", &identity).unwrap());
        assert!(record_identity(&conn, old, "bb", &identity).unwrap());
        assert_eq!(
            shared_at(&conn, alice, "b.txt").unwrap().unwrap().1,
            Some(identity)
        );
    }

    #[test]
    fn hash_prefixes_find_shared_files_only() {
        let mut conn = crate::store::open_in_memory();
        let alice = user(&mut conn, "alice");
        let a = upsert(&mut conn, alice, "a", 1, "abcdef01", 1, None).unwrap();
        upsert(&mut conn, alice, "b", 1, "abcdef02", 1, None).unwrap();
        set_shared(&mut conn, alice, &[a], true).unwrap();
        let found = shared_by_hash_prefix(&conn, "abcdef", 10).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "a");
    }
}

/// One search result: a distinct content (hash), with one of the files that hold it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchHit {
    pub file: FileRecord,
    /// How many shared files have this content.
    pub copies: u64,
}

/// An FTS5 string literal.
fn fts_quote(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// Searches the shared files this instance knows, local and remote: newest first, distinct by
/// content, `limit` results from `offset`.
///
/// Every query with words, phrases, extensions or a user is answered by walking the FTS index
/// in rowid order and stopping once the page is full, so its cost follows the page size, not
/// the catalog size. Size bounds and exclusions filter that walk. A query with only size
/// bounds walks the files table the same way.
pub fn search(
    conn: &Connection,
    query: &rosewire_shell::query::Query,
    local_domain: &str,
    limit: usize,
    offset: usize,
) -> Result<Vec<SearchHit>, StoreError> {
    use rusqlite::types::Value;
    // `user:` and `instance:` both name an instance; a file must be on the one they name.
    let mut origin: Option<i64> = None;
    let domains = query
        .user
        .iter()
        .map(|u| u.domain.as_deref().unwrap_or(local_domain))
        .chain(query.instance.as_deref());
    for domain in domains {
        match super::remote::origin_token(conn, domain, local_domain)? {
            Some(id) if origin.is_none_or(|o| o == id) => origin = Some(id),
            // An instance we know no file of, or two different ones.
            _ => return Ok(Vec::new()),
        }
    }
    let mut required: Vec<String> = query
        .words
        .iter()
        .map(|w| match w.strip_suffix('*') {
            // `beat*` matches words that start with beat; a plain word matches whole words,
            // which the index answers without expanding every possible continuation.
            Some(prefix) if !prefix.is_empty() => format!("words : {}*", fts_quote(prefix)),
            _ => format!("words : {}", fts_quote(w)),
        })
        .chain(
            query
                .phrases
                .iter()
                .map(|p| format!("words : {}", fts_quote(p))),
        )
        .collect();
    if !query.extensions.is_empty() {
        let exts: Vec<String> = query.extensions.iter().map(|e| fts_quote(e)).collect();
        required.push(format!("ext : ({})", exts.join(" OR ")));
    }
    if let Some(user) = &query.user {
        required.push(format!("owner : {}", fts_quote(&user.nick.to_lowercase())));
    }
    if let Some(id) = origin {
        required.push(format!("origin : o{id}"));
    }
    if query.min_size.is_some() || query.max_size.is_some() {
        // The size classes the bounds allow; the exact bounds are checked on each row.
        let low = size_class(query.min_size.unwrap_or(0));
        let high = size_class(query.max_size.unwrap_or(u64::MAX));
        let classes: Vec<String> = (low..=high).map(|c| format!("s{c}")).collect();
        required.push(format!("size : ({})", classes.join(" OR ")));
    }
    let excluded = query
        .excluded
        .iter()
        .map(|e| format!("words : {}", fts_quote(e)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let mut args: Vec<Value> = Vec::new();
    let mut conditions = vec!["f.shared = 1".to_owned()];
    let (from, order) = if required.is_empty() {
        if !excluded.is_empty() {
            args.push(Value::Text(excluded));
            conditions.push(format!(
                "f.id NOT IN (SELECT rowid FROM files_fts WHERE files_fts MATCH ?{})",
                args.len()
            ));
        }
        ("files f", "f.id DESC")
    } else {
        let mut m = required.join(" AND ");
        if !excluded.is_empty() {
            m = format!("({m}) NOT ({excluded})");
        }
        args.push(Value::Text(m));
        conditions.push(format!("files_fts MATCH ?{}", args.len()));
        (
            "files_fts JOIN files f ON f.id = files_fts.rowid",
            "files_fts.rowid DESC",
        )
    };
    if let Some(min) = query.min_size {
        args.push(Value::Integer(i64::try_from(min).unwrap_or(i64::MAX)));
        conditions.push(format!("f.size >= ?{}", args.len()));
    }
    if let Some(max) = query.max_size {
        args.push(Value::Integer(i64::try_from(max).unwrap_or(i64::MAX)));
        conditions.push(format!("f.size <= ?{}", args.len()));
    }
    let sql = format!(
        "SELECT f.id, COALESCE(f.owner_id, 0), COALESCE(u.nick, ro.nick), f.path, f.name,
                f.size, f.hash, f.modified, f.shared, o.domain
         FROM {from} LEFT JOIN users u ON u.id = f.owner_id
         LEFT JOIN remote_owners ro ON ro.id = f.remote_owner_id
         LEFT JOIN remote_origins o ON o.id = ro.origin_id
         WHERE {}
         ORDER BY {order}",
        conditions.join(" AND ")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    // Distinct by content: the first (newest) file of each hash stands for it.
    let mut seen = std::collections::HashSet::new();
    let mut hits = Vec::new();
    while let Some(row) = rows.next()? {
        let file = any_record(row)?;
        if !seen.insert(file.hash.clone()) {
            continue;
        }
        if seen.len() > offset {
            hits.push(SearchHit { file, copies: 1 });
        }
        if hits.len() == limit {
            break;
        }
    }
    drop(rows);
    count_copies(conn, &mut hits)?;
    Ok(hits)
}

/// Fills in how many shared files hold each hit's content; a remote hit whose content a
/// local user shares too stands for the local copy, which can be downloaded from here.
fn count_copies(conn: &Connection, hits: &mut [SearchHit]) -> Result<(), StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT count(*) FROM files WHERE hash = ?1 AND shared = 1")?;
    let mut local = conn.prepare_cached(&format!(
        "{SELECT} WHERE f.hash = ?1 AND f.shared = 1 ORDER BY f.id DESC LIMIT 1"
    ))?;
    for hit in hits {
        hit.copies = stmt
            .query_row([&hit.file.hash], |r| r.get::<_, i64>(0))?
            .max(1) as u64;
        if hit.file.origin.is_some() && hit.copies > 1 {
            if let Some(file) = local.query_row([&hit.file.hash], record).optional()? {
                hit.file = file;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod search_tests {
    use super::*;
    use crate::store::users::{authenticate, AuthOutcome};
    use rosewire_shell::query::parse_query;

    fn catalog() -> Connection {
        let mut conn = crate::store::open_in_memory();
        let mut ids = Vec::new();
        for nick in ["alice", "bob"] {
            let AuthOutcome::Claimed { user_id, .. } =
                authenticate(&mut conn, nick, &format!("SHA256:{nick}"), "k", 0).unwrap()
            else {
                panic!()
            };
            ids.push(user_id);
        }
        let files = [
            (0, "Jazz/Miles_Davis/So What.flac", 30 << 20, "h1", true),
            (
                0,
                "Jazz/Miles_Davis/Blue in Green (live).flac",
                25 << 20,
                "h2",
                true,
            ),
            (0, "Rock/Beatles - Let It Be.mp3", 5 << 20, "h3", true),
            (0, "private/diary.txt", 100, "h4", false),
            (1, "music/So What.flac", 30 << 20, "h1", true),
            (1, "books/kind of blue.epub", 2 << 20, "h5", true),
        ];
        for (owner, path, size, hash, shared) in files {
            let id = upsert(&mut conn, ids[owner], path, size, hash, 0, None).unwrap();
            set_shared(&mut conn, ids[owner], &[id], shared).unwrap();
        }
        conn
    }

    /// One row of the table: a query and the names it finds, in order.
    fn check(conn: &Connection, query: &str, expected: &[&str]) {
        let q = parse_query(query).unwrap();
        let hits = search(conn, &q, "rose.test", 100, 0).unwrap();
        let mut names: Vec<&str> = hits.iter().map(|h| h.file.name.as_str()).collect();
        names.sort();
        let mut want = expected.to_vec();
        want.sort();
        assert_eq!(names, want, "{query:?}");
    }

    #[test]
    fn search_table() {
        let conn = catalog();
        check(
            &conn,
            "miles",
            &["So What.flac", "Blue in Green (live).flac"],
        );
        check(&conn, "so what", &["So What.flac"]);
        check(&conn, "beat*", &["Beatles - Let It Be.mp3"]);
        check(&conn, "beat", &[]);
        check(&conn, "\"kind of blue\"", &["kind of blue.epub"]);
        check(&conn, "blue -live", &["kind of blue.epub"]);
        check(
            &conn,
            "ext:flac",
            &["So What.flac", "Blue in Green (live).flac"],
        );
        check(&conn, "ext:flac -live", &["So What.flac"]);
        check(&conn, "size:>26M", &["So What.flac"]);
        check(&conn, "size:<3M", &["kind of blue.epub"]);
        check(
            &conn,
            "user:@bob@rose.test",
            &["So What.flac", "kind of blue.epub"],
        );
        check(&conn, "user:@bob@elsewhere.example", &[]);
        check(&conn, "diary", &[]);
        check(&conn, "nothing-like-this", &[]);
    }

    #[test]
    fn the_same_content_is_one_result_with_its_copies() {
        let conn = catalog();
        let hits = search(
            &conn,
            &parse_query("\"so what\"").unwrap(),
            "rose.test",
            100,
            0,
        )
        .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].copies, 2);
    }

    #[test]
    fn pages_do_not_overlap() {
        let conn = catalog();
        let q = parse_query("ext:flac").unwrap();
        let first = search(&conn, &q, "rose.test", 1, 0).unwrap();
        let second = search(&conn, &q, "rose.test", 1, 1).unwrap();
        assert_eq!((first.len(), second.len()), (1, 1));
        assert_ne!(first[0].file.hash, second[0].file.hash);
    }
}

/// Inserts many files for one owner in one transaction (catalog imports and benchmarks).
/// Returns how many were inserted.
pub fn insert_many<'a>(
    conn: &mut Connection,
    owner_id: i64,
    files: impl IntoIterator<Item = (&'a str, u64, &'a str, bool)>,
    modified: i64,
) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    let mut count = 0;
    {
        let mut file = tx.prepare(
            "INSERT INTO files (owner_id, path, name, size, hash, modified, shared)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (path, size, hash, shared) in files {
            file.execute(params![
                owner_id,
                path,
                last_component(path),
                size as i64,
                hash,
                modified,
                shared
            ])?;
            index_file(&tx, tx.last_insert_rowid(), owner_id, path, size)?;
            count += 1;
        }
    }
    tx.commit()?;
    Ok(count)
}

#[cfg(test)]
mod bulk_tests {
    use super::*;
    use crate::store::users::{authenticate, AuthOutcome};
    use rosewire_shell::query::parse_query;

    #[test]
    fn bulk_inserted_files_are_searchable_by_every_column() {
        let mut conn = crate::store::open_in_memory();
        let AuthOutcome::Claimed { user_id, .. } =
            authenticate(&mut conn, "User7", "SHA256:x", "k", 0).unwrap()
        else {
            panic!()
        };
        let files = [
            ("a/b/01 - miten karo.flac", 10, "h1", true),
            ("a/c/02 - miten.epub", 10, "h2", true),
        ];
        assert_eq!(insert_many(&mut conn, user_id, files, 0).unwrap(), 2);
        for (q, n) in [
            ("miten ext:flac", 1),
            ("ext:epub size:<1M", 1),
            ("user:user7 miten", 2),
            ("karo", 1),
        ] {
            let hits = search(&conn, &parse_query(q).unwrap(), "x", 100, 0).unwrap();
            assert_eq!(hits.len(), n, "{q}");
        }
    }
}
