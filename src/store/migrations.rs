//! Versioned schema migrations, tracked in SQLite's `user_version`.
//!
//! Append a migration to [`MIGRATIONS`]; never edit one that has shipped.

use rusqlite::Connection;

use super::StoreError;

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: users, their keys, and the local chat.
    "CREATE TABLE users (
        id          INTEGER PRIMARY KEY,
        nick        TEXT NOT NULL,
        nick_key    TEXT NOT NULL UNIQUE,  -- lowercase nick: uniqueness is case-insensitive
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE user_keys (
        fingerprint TEXT PRIMARY KEY,      -- SHA256:... of the public key
        user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        public_key  TEXT NOT NULL,         -- OpenSSH one-line form
        added_at    INTEGER NOT NULL
    );
    CREATE INDEX user_keys_by_user ON user_keys(user_id);
    CREATE TABLE chat_lines (
        id          INTEGER PRIMARY KEY,
        at          INTEGER NOT NULL,      -- unix seconds
        from_nick   TEXT NOT NULL,
        from_domain TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('say', 'me')),
        text        TEXT NOT NULL
    );",
    // 2: the library catalog and its full-text index.
    "CREATE TABLE files (
        id          INTEGER PRIMARY KEY,
        owner_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        path        TEXT NOT NULL,         -- inside library/, '/'-separated, no leading '/'
        name        TEXT NOT NULL,         -- the last component of path
        size        INTEGER NOT NULL,
        hash        TEXT NOT NULL,         -- hex BLAKE3 of the content: the network id
        modified    INTEGER NOT NULL,      -- unix seconds
        shared      INTEGER NOT NULL DEFAULT 0,
        UNIQUE (owner_id, path)
    );
    CREATE INDEX files_by_hash ON files(hash);
    CREATE INDEX files_shared_by_owner ON files(owner_id, shared);
    -- rowid = files.id. words: the name and the folders above it; ext: the extension;
    -- owner: the owner's lowercase nick; size: `s` and the bit length of the size (s0 for
    -- empty files, s21 for 1 to 2 MiB). Filters on these are column queries, so every search
    -- is driven by the index and can stop as soon as a page is full.
    CREATE VIRTUAL TABLE files_fts USING fts5(
        words, ext, owner, size,
        content='', contentless_delete=1, prefix='2 3', tokenize='unicode61 remove_diacritics 2'
    );",
    // 3: pending keys: keys proposed with /keys add, waiting for their holder to log in
    // once as NICK+CODE. A pending key belongs to nobody: authentication ignores this table.
    "CREATE TABLE pending_keys (
        code        TEXT PRIMARY KEY,      -- one-time code, uppercase base32
        user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        fingerprint TEXT NOT NULL,         -- SHA256:... of the proposed key
        public_key  TEXT NOT NULL,         -- OpenSSH one-line form
        added_at    INTEGER NOT NULL,      -- unix seconds
        expires_at  INTEGER NOT NULL,      -- unix seconds; past it the code is void
        UNIQUE (user_id, fingerprint)
    );",
    // 4: nickname skeletons: nick::skeleton of each nickname, unique, so a claim that
    // looks like an existing nickname fails inside the claim's transaction. Existing users
    // whose skeletons collide keep their nicknames: the oldest gets the skeleton, the others
    // NULL (which the unique index allows), and no new look-alike can join them.
    "ALTER TABLE users ADD COLUMN nick_skeleton TEXT;
    CREATE UNIQUE INDEX users_by_skeleton ON users(nick_skeleton);
    UPDATE OR IGNORE users SET nick_skeleton = rosewire_nick_skeleton(nick);",
    // 5: file identity. Where each catalogued file is on disk (device, inode) and its
    // modification time in nanoseconds, read from the handle that was renamed into place; a
    // download compares them (and the size) with the file it opened before sending a byte.
    // NULL for files catalogued before: those are hashed in full before their first byte is
    // sent, and their identity is recorded then (`files::record_identity`).
    "ALTER TABLE files ADD COLUMN disk_dev INTEGER;
    ALTER TABLE files ADD COLUMN disk_ino INTEGER;
    ALTER TABLE files ADD COLUMN disk_mtime_ns INTEGER;",
    // 6: paged listings. `/browse` walks one owner's shared files by path, a page at a time.
    "CREATE INDEX files_shared_by_owner_path ON files(owner_id, shared, path);",
    // 7: federation. Peers and their delivery schedule; the outbox (each activity once, with
    // a delivery row per peer still owed it, so a peer gets what it missed in order); the ids
    // of activities already applied, so a repeated one is dropped.
    "CREATE TABLE peers (
        domain           TEXT PRIMARY KEY,  -- lowercase; host[:port] in dev mode
        added_at         INTEGER NOT NULL,  -- unix seconds
        last_seen        INTEGER,           -- unix seconds of the last successful exchange
        state            TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'backoff', 'unavailable')),
        failures         INTEGER NOT NULL DEFAULT 0,
        first_failure_ms INTEGER,           -- unix ms; start of the current run of failures
        next_attempt_ms  INTEGER NOT NULL DEFAULT 0,
        catalog_pulled   INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE outbox (
        seq         INTEGER PRIMARY KEY,
        activity_id TEXT NOT NULL UNIQUE,
        envelope    TEXT NOT NULL,          -- the JSON body posted to inboxes
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE deliveries (
        peer TEXT NOT NULL REFERENCES peers(domain) ON DELETE CASCADE,
        seq  INTEGER NOT NULL REFERENCES outbox(seq) ON DELETE CASCADE,
        PRIMARY KEY (peer, seq)
    ) WITHOUT ROWID;
    CREATE TABLE inbox_seen (
        activity_id TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX inbox_seen_by_time ON inbox_seen(received_at);",
    // 8: federation: each peer's Ed25519 key, pinned on first contact (fed/verify.rs) and
    // replaced only by a fresh fetch of its instance document from the peer itself.
    "CREATE TABLE peer_keys (
        domain         TEXT PRIMARY KEY,   -- the peer's domain (host, or host:port in dev)
        key_id         TEXT NOT NULL,      -- {base_url}/api/s2s/instance#main-key
        public_key_pem TEXT NOT NULL,      -- SPKI PEM
        pinned_at      INTEGER NOT NULL    -- unix seconds
    );",
    // 9: profiles. A user's bio as `/whois` and other instances show it: sanitized and
    // bounded before it is stored (`profile::Bio`); empty when unset. `users.created_at` is
    // the `joined` time.
    "ALTER TABLE users ADD COLUMN bio TEXT NOT NULL DEFAULT '';",
    // 10: remote catalogs. Files shared on other instances join the local ones in `files` and
    // `files_fts`, so one index walk answers every search (see ARCHITECTURE.md). `files` is
    // rebuilt so that a row belongs to a local user or to a remote owner, and the index is
    // rebuilt with an `origin` column: `o0` for local files, `oN` for files of
    // `remote_origins` row N, so `instance:` and `user:@nick@domain` are index queries too.
    "CREATE TABLE remote_origins (
        id          INTEGER PRIMARY KEY,
        domain      TEXT NOT NULL UNIQUE,  -- lowercase, as peers are named
        files       INTEGER NOT NULL DEFAULT 0, -- rows of `files` from it: the per-peer bound
        generation  INTEGER NOT NULL DEFAULT 0  -- the last catalog pull begun (see `remote.rs`)
    );
    CREATE TABLE remote_owners (
        id          INTEGER PRIMARY KEY,
        origin_id   INTEGER NOT NULL REFERENCES remote_origins(id) ON DELETE CASCADE,
        nick        TEXT NOT NULL,         -- as the origin spells it
        nick_key    TEXT NOT NULL,         -- lowercase
        UNIQUE (origin_id, nick_key)
    );
    CREATE TABLE files_v7 (
        id          INTEGER PRIMARY KEY,
        owner_id    INTEGER REFERENCES users(id) ON DELETE CASCADE,          -- local files
        remote_owner_id INTEGER REFERENCES remote_owners(id) ON DELETE CASCADE, -- remote ones
        path        TEXT NOT NULL,
        name        TEXT NOT NULL,
        size        INTEGER NOT NULL,
        hash        TEXT NOT NULL,
        modified    INTEGER NOT NULL,      -- unix seconds; for a remote file, when it arrived
        shared      INTEGER NOT NULL DEFAULT 0,  -- always 1 for a remote file
        disk_dev    INTEGER,
        disk_ino    INTEGER,
        disk_mtime_ns INTEGER,
        generation  INTEGER,               -- remote files: the origin's pull it was last seen in
        CHECK ((owner_id IS NULL) <> (remote_owner_id IS NULL)),
        UNIQUE (owner_id, path),
        UNIQUE (remote_owner_id, path)
    );
    INSERT INTO files_v7 (id, owner_id, path, name, size, hash, modified, shared,
                          disk_dev, disk_ino, disk_mtime_ns)
        SELECT id, owner_id, path, name, size, hash, modified, shared,
               disk_dev, disk_ino, disk_mtime_ns FROM files;
    DROP TABLE files;
    ALTER TABLE files_v7 RENAME TO files;
    CREATE INDEX files_by_hash ON files(hash);
    CREATE INDEX files_shared_by_owner ON files(owner_id, shared);
    CREATE INDEX files_shared_by_owner_path ON files(owner_id, shared, path);
    -- The catalog endpoint pages through local shared files by id.
    CREATE INDEX files_local_shared ON files(id) WHERE shared = 1 AND owner_id IS NOT NULL;
    DROP TABLE files_fts;
    CREATE VIRTUAL TABLE files_fts USING fts5(
        words, ext, owner, size, origin,
        content='', contentless_delete=1, prefix='2 3', tokenize='unicode61 remove_diacritics 2'
    );
    INSERT INTO files_fts (rowid, words, ext, owner, size, origin)
        SELECT f.id, rosewire_index_words(f.path), rosewire_extension(f.path), u.nick_key,
               rosewire_size_token(f.size), 'o0'
        FROM files f JOIN users u ON u.id = f.owner_id;",
    // 11: private messages and ignore lists. Each user's copy of a message is a row of theirs
    // (`owner_id`): the sender's copy (`outgoing`, state queued/delivered/failed) and the
    // recipient's (state unread/read). `peer` is the other party, `@nick@domain` as spelled,
    // `peer_key` its lowercase form, which conversations group by. `activity_id` links a
    // remote message to its activity: ours for a sent one (the outbox settles its state),
    // the sender's for a received one. A sealed message's text is age armor, never read here.
    "CREATE TABLE messages (
        id          INTEGER PRIMARY KEY,
        owner_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        peer        TEXT NOT NULL,
        peer_key    TEXT NOT NULL,
        outgoing    INTEGER NOT NULL,
        text        TEXT NOT NULL,
        sealed      INTEGER NOT NULL DEFAULT 0,
        at          INTEGER NOT NULL,      -- unix seconds
        state       TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'failed', 'unread', 'read')),
        reason      TEXT,                  -- why a sent message failed
        activity_id TEXT
    );
    CREATE INDEX messages_by_conversation ON messages(owner_id, peer_key, id);
    CREATE INDEX messages_unread ON messages(owner_id, state);
    CREATE INDEX messages_by_activity ON messages(activity_id) WHERE activity_id IS NOT NULL;
    CREATE TABLE ignores (
        user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        address     TEXT NOT NULL,         -- @nick@domain, lowercase
        added_at    INTEGER NOT NULL,
        PRIMARY KEY (user_id, address)
    ) WITHOUT ROWID;",
];

/// `rosewire_nick_skeleton(nick)` in SQL is [`crate::nick::skeleton`], for migrations that
/// compute skeletons of stored nicknames; `rosewire_index_words`, `rosewire_extension` and
/// `rosewire_size_token` compute search index columns as [`super::files`] does.
fn register_functions(conn: &Connection) -> Result<(), StoreError> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "rosewire_nick_skeleton",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| Ok(crate::nick::skeleton(&ctx.get::<String>(0)?)),
    )?;
    // The search index's columns, for the migration that rebuilds it.
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("rosewire_index_words", 1, flags, |ctx| {
        Ok(super::files::index_words(&ctx.get::<String>(0)?))
    })?;
    conn.create_scalar_function("rosewire_extension", 1, flags, |ctx| {
        Ok(super::files::extension(&ctx.get::<String>(0)?))
    })?;
    conn.create_scalar_function("rosewire_size_token", 1, flags, |ctx| {
        Ok(super::files::size_token(ctx.get::<i64>(0)?.max(0) as u64))
    })?;
    Ok(())
}

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: MIGRATIONS.len(),
        });
    }
    register_functions(conn)?;
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (version + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = version + 1, "database migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
    }

    #[test]
    fn existing_look_alike_users_keep_their_nicknames_and_the_oldest_its_skeleton() {
        let mut conn = Connection::open_in_memory().unwrap();
        register_functions(&conn).unwrap();
        let skeletons = MIGRATIONS
            .iter()
            .position(|sql| sql.contains("ADD COLUMN nick_skeleton"))
            .unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &MIGRATIONS[..skeletons] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", skeletons as i64)
            .unwrap();
        tx.commit().unwrap();
        for (nick, key) in [("alice", "alice"), ("a1ice", "a1ice"), ("bob", "bob")] {
            conn.execute(
                "INSERT INTO users (nick, nick_key, created_at) VALUES (?1, ?2, 0)",
                [nick, key],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let rows: Vec<(String, Option<String>)> = conn
            .prepare("SELECT nick, nick_skeleton FROM users ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                ("alice".to_owned(), Some("alice".to_owned())),
                ("a1ice".to_owned(), None),
                ("bob".to_owned(), Some("bob".to_owned())),
            ]
        );
    }

    #[test]
    fn local_files_stay_searchable_and_shared_across_the_remote_catalog_migration() {
        let mut conn = Connection::open_in_memory().unwrap();
        register_functions(&conn).unwrap();
        let remote = MIGRATIONS
            .iter()
            .position(|sql| sql.contains("CREATE TABLE remote_origins"))
            .unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &MIGRATIONS[..remote] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", remote as i64)
            .unwrap();
        tx.commit().unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, nick, nick_key, created_at) VALUES (7, 'Alice', 'alice', 0);
             INSERT INTO files (id, owner_id, path, name, size, hash, modified, shared, disk_ino)
                 VALUES (41, 7, 'Jazz/So_What.flac', 'So_What.flac', 3000000, 'h1', 5, 1, 99),
                        (42, 7, 'private.txt', 'private.txt', 1, 'h2', 5, 0, NULL);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let q = rosewire_shell::query::parse_query("what user:alice ext:flac size:>2M").unwrap();
        let hits = super::super::files::search(&conn, &q, "rose.example", 10, 0).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].file.id, hits[0].file.owner_id), (41, 7));
        let q = rosewire_shell::query::parse_query("instance:rose.example").unwrap();
        let hits = super::super::files::search(&conn, &q, "rose.example", 10, 0).unwrap();
        assert_eq!(hits.len(), 1, "the private file stays out of search");
        let ino: Option<i64> = conn
            .query_row("SELECT disk_ino FROM files WHERE id = 41", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ino, Some(99));
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("99"), "{err}");
    }
}
