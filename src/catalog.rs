//! The catalog as the commands see it: search, browse, look up by id, a user's own files,
//! share and unshare; and the catalogs of other instances: applying their shares and
//! unshares, a first-contact pull of their catalog page by page, forgetting a peer, and the
//! page of local shared files that peers pull from us.
//!
//! **Boundary:** commands get [`CatalogFile`]s, never database rows; the store's
//! `FileRecord` is converted here. Federation hands in [`RemoteFile`]s and [`CatalogPage`]s
//! as they came off the wire: they are validated here, and an owner must belong to the
//! instance that sent them ([`RemoteError::ForeignOwner`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rosewire_shell::query::Query;
use rosewire_shell::sanitize::is_unsafe_char;
use rosewire_shell::Address;
use serde::{Deserialize, Serialize};

use crate::sftp::paths::{MAX_NAME_BYTES, MAX_PATH_BYTES};
use crate::store::files::{self, FileRecord};
use crate::store::remote::{self, NewRemoteFile};
use crate::store::{users, Store, StoreError};

pub use crate::store::files::{PageStart, Totals};

/// Files in a page of `GET /api/s2s/catalog` when the request names no limit.
pub const CATALOG_PAGE_DEFAULT: usize = 500;
/// Most files in a page of `GET /api/s2s/catalog` (a larger `limit` is refused with 400).
pub const CATALOG_PAGE_MAX: usize = 1000;
/// Most remote files one share, unshare or catalog page may carry: each is applied in one
/// transaction on the store thread, which other work waits for. A peer's own pages are at
/// most [`CATALOG_PAGE_MAX`]; a Share activity carries at most 100.
pub const MAX_REMOTE_BATCH: usize = CATALOG_PAGE_MAX;

/// Files in a page of search results or of a listing.
pub const PAGE_SIZE: usize = 100;

/// A file in the catalog, as the domain sees it.
#[derive(Debug, Clone)]
pub struct CatalogFile {
    /// The content hash (hex BLAKE3): the id `/get` takes.
    pub id: String,
    /// The file name (last part of `path`).
    pub name: String,
    /// Path inside the owner's `library/`, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Who holds it, with the domain it lives on.
    pub owner: Address,
    /// The local user id of the owner, where the bytes are; `None` for a file on another
    /// instance (`owner` names it).
    pub owner_id: Option<i64>,
    /// Offered to others (always true in search, browse and lookups by id).
    pub shared: bool,
}

impl CatalogFile {
    fn from_record(f: FileRecord, domain: &str) -> CatalogFile {
        CatalogFile {
            owner: Address::new(&f.owner_nick, f.origin.as_deref().unwrap_or(domain)),
            owner_id: f.origin.is_none().then_some(f.owner_id),
            id: f.hash,
            name: f.name,
            path: f.path,
            size: f.size,
            shared: f.shared,
        }
    }
}

/// Whose files a listing shows: a local user, or an owner on another instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKey {
    /// A local user's id.
    Local(i64),
    /// The id of a remote owner's row (`remote_owners`).
    Remote(i64),
}

/// A file another instance shares, as a Share activity names it (`{id, name, path, size}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteFile {
    /// Hex BLAKE3 of the content (64 lowercase hex digits).
    pub id: String,
    /// The last component of `path`.
    pub name: String,
    /// Path inside the owner's library, `/`-separated.
    pub path: String,
    pub size: u64,
}

/// One file of a catalog page: a local shared file with its owner's full address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageFile {
    /// `@nick@domain`.
    pub owner: String,
    pub id: String,
    pub name: String,
    pub path: String,
    pub size: u64,
}

/// A page of `GET /api/s2s/catalog`: `{"files": [..], "next": CURSOR | null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogPage {
    pub files: Vec<PageFile>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// Where a catalog page starts: opaque to peers, which only send back what they were given.
/// (It is the id of the last file of the page before, in decimal.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Cursor(i64);

/// A cursor this instance never gave out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad cursor {0:?}; send back the \"next\" of the previous page, or none for the first")]
pub struct BadCursor(pub String);

impl std::str::FromStr for Cursor {
    type Err = BadCursor;

    fn from_str(text: &str) -> Result<Cursor, BadCursor> {
        match text.parse::<i64>() {
            Ok(id) if id >= 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(Cursor(id)),
            _ => Err(BadCursor(text.chars().take(64).collect())),
        }
    }
}

impl TryFrom<String> for Cursor {
    type Error = BadCursor;

    fn try_from(text: String) -> Result<Cursor, BadCursor> {
        text.parse()
    }
}

impl From<Cursor> for String {
    fn from(c: Cursor) -> String {
        c.0.to_string()
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What applying remote files changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// New files.
    pub added: usize,
    /// Files at a known path whose content changed.
    pub replaced: usize,
    /// Files known already, as they were.
    pub unchanged: usize,
    /// New files left out: the peer holds `federation.max_remote_files_per_peer` here already.
    pub over_bound: usize,
    /// Files left out because they were malformed (bad id, path, name or owner).
    pub invalid: usize,
}

/// Why remote files were refused as a whole (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// An owner whose domain is not the sending instance's (the inbox answers 403).
    #[error("{owner} is not a user of {origin}; an instance speaks only for its own users")]
    ForeignOwner { origin: String, owner: String },
    /// A peer that claims this instance's own domain.
    #[error("{0} is this instance's own domain, not a peer")]
    OwnDomain(String),
    /// More files in one batch than [`MAX_REMOTE_BATCH`].
    #[error("{got} files in one batch; at most {MAX_REMOTE_BATCH} are accepted, send pages")]
    TooMany { got: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One search result: a distinct content, with one of the files that hold it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub file: CatalogFile,
    /// How many shared files have this content.
    pub copies: u64,
}

/// One page of a listing, and whether more follow.
#[derive(Debug)]
pub struct Page {
    /// At most [`PAGE_SIZE`] files, by path.
    pub files: Vec<CatalogFile>,
    pub more: bool,
}

/// The catalog of this instance. Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    /// The database, where the catalog lives.
    store: Store,
    /// This instance's domain, the home of every local owner.
    domain: String,
    /// Most files kept from one peer (`federation.max_remote_files_per_peer`).
    max_remote_files_per_peer: u64,
    /// Remote files left out since start because their peer was at its bound.
    over_bound: Arc<AtomicU64>,
}

impl Catalog {
    pub fn new(store: Store, domain: &str) -> Catalog {
        Catalog {
            store,
            domain: domain.to_owned(),
            max_remote_files_per_peer: crate::config::DEFAULT_MAX_REMOTE_FILES_PER_PEER,
            over_bound: Arc::default(),
        }
    }

    /// This catalog, keeping at most `bound` files from any one peer.
    pub fn with_max_remote_files_per_peer(self, bound: u64) -> Catalog {
        Catalog {
            max_remote_files_per_peer: bound,
            ..self
        }
    }

    /// Page `page` (from 1) of the shared files matching `query`, distinct by content.
    pub async fn search(&self, query: &Query, page: usize) -> Result<Vec<Hit>, StoreError> {
        let query = query.clone();
        let domain = self.domain.clone();
        let offset = page.saturating_sub(1).saturating_mul(PAGE_SIZE);
        let hits = self
            .store
            .call(move |conn| files::search(conn, &query, &domain, PAGE_SIZE, offset))
            .await?;
        Ok(hits
            .into_iter()
            .map(|h| Hit {
                file: CatalogFile::from_record(h.file, &self.domain),
                copies: h.copies,
            })
            .collect())
    }

    /// The owner at `address` (this instance's users, or an owner of a remote file we hold):
    /// whose files to list, and the address with the nick as its home spells it.
    pub async fn owner(
        &self,
        address: &Address,
    ) -> Result<Option<(OwnerKey, Address)>, StoreError> {
        let nick = address.nick.clone();
        if address.is_on(&self.domain) {
            let found = self
                .store
                .call(move |conn| users::user_id_by_nick(conn, &nick))
                .await?;
            return Ok(
                found.map(|(id, nick)| (OwnerKey::Local(id), Address::new(&nick, &self.domain)))
            );
        }
        let domain = address.domain.clone().unwrap_or_default();
        let found = {
            let domain = domain.clone();
            self.store
                .call(move |conn| remote::owner_by_address(conn, &domain, &nick))
                .await?
        };
        Ok(found.map(|(id, nick)| (OwnerKey::Remote(id), Address::new(&nick, &domain))))
    }

    /// A page of what `owner` shares from `start`, and how many files they share in all.
    pub async fn browse(
        &self,
        owner: OwnerKey,
        start: &PageStart,
    ) -> Result<(Page, u64), StoreError> {
        let from = start.clone();
        let (records, shared) = self
            .store
            .call(move |conn| match owner {
                OwnerKey::Local(id) => Ok((
                    read_page(conn, id, true, &from)?,
                    files::count_shared(conn, id)?,
                )),
                OwnerKey::Remote(id) => {
                    let mut records = remote::list_page(conn, id, &from, PAGE_SIZE + 1)?;
                    let more = records.len() > PAGE_SIZE;
                    records.truncate(PAGE_SIZE);
                    Ok(((records, more), remote::count(conn, id)?))
                }
            })
            .await?;
        Ok((self.page(records), shared))
    }

    /// A page of the user's own files (shared or not) from `start`, and their totals.
    pub async fn library(
        &self,
        user_id: i64,
        start: &PageStart,
    ) -> Result<(Page, Totals), StoreError> {
        let from = start.clone();
        let (records, totals) = self
            .store
            .call(move |conn| {
                Ok((
                    read_page(conn, user_id, false, &from)?,
                    files::totals(conn, user_id)?,
                ))
            })
            .await?;
        Ok((self.page(records), totals))
    }

    /// Every file of the user's library.
    pub async fn my_files(&self, user_id: i64) -> Result<Vec<CatalogFile>, StoreError> {
        let records = self
            .store
            .call(move |conn| files::list(conn, user_id))
            .await?;
        Ok(self.files(records))
    }

    /// Shared files whose id starts with `prefix`, at most `limit`, one per content.
    pub async fn resolve_id(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<CatalogFile>, StoreError> {
        let p = prefix.to_owned();
        let mut records = self
            .store
            .call(move |conn| files::shared_by_hash_prefix(conn, &p, limit))
            .await?;
        records.dedup_by(|a, b| a.hash == b.hash);
        Ok(self.files(records))
    }

    /// Every shared copy of the content `id` (64 hex digits), here and on other instances:
    /// at most `limit`, in catalog order.
    pub async fn copies(&self, id: &str, limit: usize) -> Result<Vec<CatalogFile>, StoreError> {
        let p = id.to_owned();
        let records = self
            .store
            .call(move |conn| files::shared_by_hash_prefix(conn, &p, limit))
            .await?;
        Ok(self
            .files(records)
            .into_iter()
            .filter(|f| f.id == id)
            .collect())
    }

    /// Shares (or unshares) the user's files at these paths; returns how many changed.
    pub async fn set_shared(
        &self,
        user_id: i64,
        paths: Vec<String>,
        shared: bool,
    ) -> Result<usize, StoreError> {
        let paths: HashSet<String> = paths.into_iter().collect();
        self.store
            .call(move |conn| {
                let ids: Vec<i64> = files::list(conn, user_id)?
                    .into_iter()
                    .filter(|f| paths.contains(&f.path))
                    .map(|f| f.id)
                    .collect();
                files::set_shared(conn, user_id, &ids, shared)
            })
            .await
    }

    /// Applies a Share activity of `owner` from the instance `origin`: adds the files (or
    /// replaces what the owner had at the same path). Malformed files are left out and
    /// counted; so are new files past the peer's bound, with a log line.
    pub async fn apply_remote_share(
        &self,
        origin: &str,
        owner: Address,
        files: Vec<RemoteFile>,
    ) -> Result<Applied, RemoteError> {
        let origin = self.peer_domain(origin)?;
        let nick = owner_nick(&origin, &owner)?;
        batch_size(files.len())?;
        let mut invalid = 0;
        let rows: Vec<NewRemoteFile> = files
            .into_iter()
            .filter_map(|f| {
                let row = valid_file(&nick, f);
                invalid += usize::from(row.is_none());
                row
            })
            .collect();
        self.apply_rows(origin, rows, invalid).await
    }

    /// Applies an Unshare activity of `owner` from `origin`: removes the files named by
    /// `(id, path)`. Returns how many were removed.
    pub async fn apply_remote_unshare(
        &self,
        origin: &str,
        owner: Address,
        files: Vec<(String, String)>,
    ) -> Result<usize, RemoteError> {
        let origin = self.peer_domain(origin)?;
        let nick = owner_nick(&origin, &owner)?;
        batch_size(files.len())?;
        Ok(self
            .store
            .call(move |conn| remote::unshare(conn, &origin, &nick, &files))
            .await?)
    }

    /// Begins a pull of `origin`'s whole catalog (first contact): returns the pull, for
    /// [`Catalog::finish_catalog_pull`]. Apply each page with [`Catalog::apply_catalog_page`].
    pub async fn begin_catalog_pull(&self, origin: &str) -> Result<Pull, RemoteError> {
        let origin = self.peer_domain(origin)?;
        let generation = self
            .store
            .call(move |conn| remote::begin_pull(conn, &origin))
            .await?;
        Ok(Pull(generation))
    }

    /// Applies one page of `origin`'s catalog. Every owner must be a user of `origin`, else
    /// nothing is applied. Applying a page twice changes nothing the second time.
    pub async fn apply_catalog_page(
        &self,
        origin: &str,
        page: CatalogPage,
    ) -> Result<Applied, RemoteError> {
        let origin = self.peer_domain(origin)?;
        batch_size(page.files.len())?;
        let mut invalid = 0;
        let mut rows = Vec::with_capacity(page.files.len());
        for f in page.files {
            let Ok(owner) = Address::parse(&f.owner) else {
                invalid += 1;
                continue;
            };
            let nick = owner_nick(&origin, &owner)?;
            let file = RemoteFile {
                id: f.id,
                name: f.name,
                path: f.path,
                size: f.size,
            };
            match valid_file(&nick, file) {
                Some(row) => rows.push(row),
                None => invalid += 1,
            }
        }
        self.apply_rows(origin, rows, invalid).await
    }

    /// Ends a pull: drops `origin`'s files that neither the pull's pages nor a share applied
    /// since it began (unshared while the instances were apart). Returns how many were
    /// dropped. A pull that a later one overtook drops nothing.
    pub async fn finish_catalog_pull(
        &self,
        origin: &str,
        pull: Pull,
    ) -> Result<usize, RemoteError> {
        let origin = self.peer_domain(origin)?;
        Ok(self
            .store
            .call(move |conn| remote::finish_pull(conn, &origin, pull.0))
            .await?)
    }

    /// Drops every file of the instance `domain` (a blocked peer). Returns how many.
    pub async fn forget_peer(&self, domain: &str) -> Result<usize, StoreError> {
        let domain = domain.to_lowercase();
        self.store
            .call(move |conn| remote::forget(conn, &domain))
            .await
    }

    /// How many files of the instance `domain` this catalog holds.
    pub async fn remote_count(&self, domain: &str) -> Result<u64, StoreError> {
        let domain = domain.to_lowercase();
        self.store
            .call(move |conn| remote::held(conn, &domain))
            .await
    }

    /// Remote files left out since start because their peer was at its bound.
    pub fn over_bound_total(&self) -> u64 {
        self.over_bound.load(Ordering::Relaxed)
    }

    /// A page of the files local users share (never remote ones), by id, after `after`: at
    /// most `limit`, and where the next page starts if one may follow.
    pub async fn shared_page(
        &self,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<CatalogPage, StoreError> {
        let after = after.map_or(0, |c| c.0);
        let limit = limit.clamp(1, CATALOG_PAGE_MAX);
        let mut records = self
            .store
            .call(move |conn| files::local_shared_page(conn, after, limit + 1))
            .await?;
        let more = records.len() > limit;
        records.truncate(limit);
        let next = if more {
            records.last().map(|f| Cursor(f.id))
        } else {
            None
        };
        let files = records
            .into_iter()
            .map(|f| PageFile {
                owner: Address::new(&f.owner_nick, &self.domain).to_string(),
                id: f.hash,
                name: f.name,
                path: f.path,
                size: f.size,
            })
            .collect();
        Ok(CatalogPage { files, next })
    }

    /// How many files local users share.
    pub async fn shared_count(&self) -> Result<u64, StoreError> {
        self.store
            .call(|conn| files::count_local_shared(conn))
            .await
    }

    /// `origin` as remote rows name it (lowercase), unless it is this instance's own domain.
    fn peer_domain(&self, origin: &str) -> Result<String, RemoteError> {
        if origin.eq_ignore_ascii_case(&self.domain) {
            return Err(RemoteError::OwnDomain(origin.to_owned()));
        }
        Ok(origin.to_lowercase())
    }

    async fn apply_rows(
        &self,
        origin: String,
        rows: Vec<NewRemoteFile>,
        invalid: usize,
    ) -> Result<Applied, RemoteError> {
        let bound = self.max_remote_files_per_peer;
        let now = unix_now();
        let stored = {
            let origin = origin.clone();
            self.store
                .call(move |conn| remote::apply(conn, &origin, &rows, bound, now))
                .await?
        };
        if stored.over_bound > 0 {
            self.over_bound
                .fetch_add(stored.over_bound as u64, Ordering::Relaxed);
            tracing::warn!(
                peer = %origin,
                left_out = stored.over_bound,
                bound,
                "remote catalog full: files left out (federation.max_remote_files_per_peer)"
            );
        }
        if invalid > 0 {
            tracing::info!(peer = %origin, invalid, "malformed remote files left out");
        }
        Ok(Applied {
            added: stored.added,
            replaced: stored.replaced,
            unchanged: stored.unchanged,
            over_bound: stored.over_bound,
            invalid,
        })
    }

    fn files(&self, records: Vec<FileRecord>) -> Vec<CatalogFile> {
        records
            .into_iter()
            .map(|f| CatalogFile::from_record(f, &self.domain))
            .collect()
    }

    fn page(&self, (records, more): (Vec<FileRecord>, bool)) -> Page {
        Page {
            files: self.files(records),
            more,
        }
    }
}

/// A catalog pull in progress (see [`Catalog::begin_catalog_pull`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pull(i64);

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn batch_size(got: usize) -> Result<(), RemoteError> {
    if got > MAX_REMOTE_BATCH {
        return Err(RemoteError::TooMany { got });
    }
    Ok(())
}

/// The nick of `owner` if it is a user of `origin` (compared in any case).
fn owner_nick(origin: &str, owner: &Address) -> Result<String, RemoteError> {
    let foreign = || RemoteError::ForeignOwner {
        origin: origin.to_owned(),
        owner: owner.to_string(),
    };
    if !owner
        .domain
        .as_deref()
        .is_some_and(|d| d.eq_ignore_ascii_case(origin))
    {
        return Err(foreign());
    }
    // The origin's own reserved names are its business; the shape must be a nick's.
    match crate::nick::validate_syntax(&owner.nick) {
        Ok(()) => Ok(owner.nick.clone()),
        Err(_) => Err(foreign()),
    }
}

/// The row for a remote file, if it is well formed: a 64-digit lowercase hex id, a relative
/// path of plain names (no `.`, `..`, empty, over-long or unprintable ones) and `name` its
/// last one.
fn valid_file(nick: &str, f: RemoteFile) -> Option<NewRemoteFile> {
    let id_ok = f.id.len() == 64 && f.id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let path_ok = !f.path.is_empty()
        && f.path.len() <= MAX_PATH_BYTES
        && f.path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && c.len() <= MAX_NAME_BYTES)
        && !f.path.chars().any(is_unsafe_char);
    let name_ok = f.path.rsplit('/').next() == Some(f.name.as_str());
    let size_ok = i64::try_from(f.size).is_ok();
    (id_ok && path_ok && name_ok && size_ok).then(|| NewRemoteFile {
        nick: nick.to_owned(),
        hash: f.id,
        path: f.path,
        size: f.size,
    })
}

/// Reads one page of an owner's files (shared ones only if `shared_only`) on the store
/// thread. Reads one row more than it shows, to know whether another page follows.
fn read_page(
    conn: &rusqlite::Connection,
    owner_id: i64,
    shared_only: bool,
    start: &PageStart,
) -> Result<(Vec<FileRecord>, bool), StoreError> {
    let mut records = files::list_page(conn, owner_id, shared_only, start, PAGE_SIZE + 1)?;
    let more = records.len() > PAGE_SIZE;
    records.truncate(PAGE_SIZE);
    Ok((records, more))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::users;

    /// A catalog on `rose.example` over a fresh database in `dir`, where alice has `paths`,
    /// none shared.
    fn catalog_with(
        dir: &std::path::Path,
        paths: &[&'static str],
    ) -> (Catalog, crate::store::StoreThread) {
        let (store, thread) = Store::open(&dir.join("db")).unwrap();
        let paths = paths.to_vec();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(store.call(move |conn| {
                users::authenticate(conn, "Alice", "SHA256:a", "k", 0)?;
                for (i, path) in paths.iter().enumerate() {
                    files::upsert(conn, 1, path, 1, &format!("{i:064x}"), 0, None)?;
                }
                Ok(())
            }))
            .unwrap();
        (Catalog::new(store, "rose.example"), thread)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    /// A remote file at `path` whose content is numbered `n`.
    fn remote(path: &str, n: u32) -> RemoteFile {
        RemoteFile {
            id: format!("{n:064x}"),
            name: path.rsplit('/').next().unwrap().to_owned(),
            path: path.to_owned(),
            size: 1000 + u64::from(n),
        }
    }

    fn addr(text: &str) -> Address {
        Address::parse(text).unwrap()
    }

    /// Names and owners found by `query`, sorted.
    fn found(rt: &tokio::runtime::Runtime, catalog: &Catalog, query: &str) -> Vec<String> {
        let q = rosewire_shell::query::parse_query(query).unwrap();
        let mut hits: Vec<String> = rt
            .block_on(catalog.search(&q, 1))
            .unwrap()
            .into_iter()
            .map(|h| format!("{} {}", h.file.name, h.file.owner))
            .collect();
        hits.sort();
        hits
    }

    #[test]
    fn remote_shares_are_searched_with_local_files_under_their_full_address() {
        let dir = tempfile::tempdir().unwrap();
        let (catalog, _thread) = catalog_with(dir.path(), &["jazz/blue.flac"]);
        let rt = rt();
        rt.block_on(catalog.set_shared(1, vec!["jazz/blue.flac".into()], true))
            .unwrap();
        let applied = rt
            .block_on(catalog.apply_remote_share(
                "Far.Example",
                addr("@Bob@far.example"),
                vec![
                    remote("music/blue train.flac", 1),
                    remote("books/blue.epub", 2),
                ],
            ))
            .unwrap();
        assert_eq!((applied.added, applied.invalid), (2, 0));
        rt.block_on(catalog.apply_remote_share(
            "near.example",
            addr("@alice@near.example"),
            vec![remote("blue/x.flac", 3)],
        ))
        .unwrap();
        assert_eq!(
            found(&rt, &catalog, "blue ext:flac"),
            [
                "blue train.flac @Bob@far.example",
                "blue.flac @Alice@rose.example",
                "x.flac @alice@near.example"
            ]
        );
        assert_eq!(
            found(&rt, &catalog, "blue user:@bob@far.example"),
            [
                "blue train.flac @Bob@far.example",
                "blue.epub @Bob@far.example"
            ]
        );
        // A nick on two instances: user: picks the one on the named instance.
        assert_eq!(
            found(&rt, &catalog, "blue user:alice"),
            ["blue.flac @Alice@rose.example"]
        );
        assert_eq!(
            found(&rt, &catalog, "user:@alice@near.example"),
            ["x.flac @alice@near.example"]
        );
        assert_eq!(
            found(&rt, &catalog, "instance:far.example"),
            [
                "blue train.flac @Bob@far.example",
                "blue.epub @Bob@far.example"
            ]
        );
        assert_eq!(
            found(&rt, &catalog, "blue instance:rose.example"),
            ["blue.flac @Alice@rose.example"]
        );
        assert!(found(&rt, &catalog, "blue instance:unknown.example").is_empty());
        assert!(found(&rt, &catalog, "user:@bob@far.example instance:near.example").is_empty());
        // Remote files have no local owner: their download is fetched from their instance.
        let q = rosewire_shell::query::parse_query("train").unwrap();
        let hit = rt.block_on(catalog.search(&q, 1)).unwrap().remove(0);
        assert_eq!(hit.file.owner_id, None);
        assert_eq!(
            crate::transfer::Download::from(&hit.file).source,
            crate::transfer::Source::Remote {
                holders: vec!["far.example".into()]
            }
        );
        // Lookups by id find remote files too.
        let by_id = rt
            .block_on(catalog.resolve_id(&format!("{:064x}", 2), 10))
            .unwrap();
        assert_eq!(by_id[0].owner.to_string(), "@Bob@far.example");
    }

    #[test]
    fn a_remote_owner_is_browsed_by_address_a_page_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (catalog, _thread) = catalog_with(dir.path(), &[]);
        let rt = rt();
        let files: Vec<RemoteFile> = (0..150).map(|i| remote(&format!("f{i:03}"), i)).collect();
        rt.block_on(catalog.apply_remote_share("far.example", addr("@bob@far.example"), files))
            .unwrap();
        let (key, owner) = rt
            .block_on(catalog.owner(&addr("@BOB@far.example")))
            .unwrap()
            .unwrap();
        assert_eq!(owner.to_string(), "@bob@far.example");
        let (first, shared) = rt
            .block_on(catalog.browse(key, &PageStart::Offset(0)))
            .unwrap();
        assert_eq!(
            (first.files.len(), first.more, shared),
            (PAGE_SIZE, true, 150)
        );
        let after = PageStart::After(first.files[PAGE_SIZE - 1].path.clone());
        let (second, _) = rt.block_on(catalog.browse(key, &after)).unwrap();
        assert_eq!((second.files.len(), second.more), (50, false));
        assert_eq!(second.files[0].path, "f100");
        assert!(rt
            .block_on(catalog.owner(&addr("@carol@far.example")))
            .unwrap()
            .is_none());
    }

    #[test]
    fn an_owner_of_another_domain_is_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (catalog, _thread) = catalog_with(dir.path(), &[]);
        let rt = rt();
        let refused = rt.block_on(catalog.apply_remote_share(
            "evil.example",
            addr("@bob@far.example"),
            vec![remote("a.flac", 1)],
        ));
        assert!(
            matches!(&refused, Err(RemoteError::ForeignOwner { origin, owner })
                if origin == "evil.example" && owner == "@bob@far.example"),
            "{refused:?}"
        );
        // A page with one foreign owner among good ones is refused whole.
        let page = CatalogPage {
            files: vec![
                page_file("@bob@evil.example", "a.flac", 1),
                page_file("@bob@far.example", "b.flac", 2),
            ],
            next: None,
        };
        let refused = rt.block_on(catalog.apply_catalog_page("evil.example", page));
        assert!(
            matches!(refused, Err(RemoteError::ForeignOwner { .. })),
            "{refused:?}"
        );
        // An owner without a domain, and this instance's own domain, are refused too.
        let no_domain = rt.block_on(catalog.apply_remote_share(
            "evil.example",
            addr("@bob"),
            vec![remote("a.flac", 1)],
        ));
        assert!(matches!(no_domain, Err(RemoteError::ForeignOwner { .. })));
        let own = rt.block_on(catalog.apply_remote_share(
            "Rose.Example",
            addr("@bob@rose.example"),
            vec![remote("a.flac", 1)],
        ));
        assert!(matches!(own, Err(RemoteError::OwnDomain(_))), "{own:?}");
        let unshare = rt.block_on(catalog.apply_remote_unshare(
            "evil.example",
            addr("@bob@far.example"),
            vec![],
        ));
        assert!(matches!(unshare, Err(RemoteError::ForeignOwner { .. })));
        // So is a batch larger than one transaction may hold.
        let many: Vec<RemoteFile> = (0..=MAX_REMOTE_BATCH as u32)
            .map(|i| remote(&format!("f{i}.flac"), i))
            .collect();
        let too_many = rt.block_on(catalog.apply_remote_share(
            "evil.example",
            addr("@bob@evil.example"),
            many,
        ));
        assert!(
            matches!(too_many, Err(RemoteError::TooMany { got }) if got == MAX_REMOTE_BATCH + 1),
            "{too_many:?}"
        );
        assert!(found(&rt, &catalog, "ext:flac").is_empty());
        assert_eq!(
            rt.block_on(catalog.remote_count("evil.example")).unwrap(),
            0
        );
    }

    fn page_file(owner: &str, path: &str, n: u32) -> PageFile {
        let f = remote(path, n);
        PageFile {
            owner: owner.to_owned(),
            id: f.id,
            name: f.name,
            path: f.path,
            size: f.size,
        }
    }

    #[test]
    fn malformed_remote_files_are_left_out_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (catalog, _thread) = catalog_with(dir.path(), &[]);
        let rt = rt();
        let bad = |f: RemoteFile| f;
        let files = vec![
            remote("ok.flac", 1),
            bad(RemoteFile {
                id: "abc".into(),
                ..remote("short-id.flac", 2)
            }),
            bad(RemoteFile {
                id: format!("{:064X}", u64::MAX),
                ..remote("upper.flac", 3)
            }),
            remote("../up.flac", 4),
            remote("/abs.flac", 5),
            remote("a//b.flac", 6),
            remote("esc\u{1b}[2J.flac", 7),
            bad(RemoteFile {
                name: "other.flac".into(),
                ..remote("named.flac", 8)
            }),
            bad(RemoteFile {
                size: u64::MAX,
                ..remote("huge.flac", 9)
            }),
            remote(&"n".repeat(MAX_NAME_BYTES + 1), 10),
        ];
        let applied = rt
            .block_on(catalog.apply_remote_share("far.example", addr("@bob@far.example"), files))
            .unwrap();
        assert_eq!((applied.added, applied.invalid), (1, 9));
        assert_eq!(
            found(&rt, &catalog, "ext:flac"),
            ["ok.flac @bob@far.example"]
        );
        // A page file whose owner is not an address is left out like a malformed file.
        let page = CatalogPage {
            files: vec![page_file("@", "x.flac", 11)],
            next: None,
        };
        let applied = rt
            .block_on(catalog.apply_catalog_page("far.example", page))
            .unwrap();
        assert_eq!((applied.added, applied.invalid), (0, 1));
    }

    #[test]
    fn unsharing_removes_only_the_named_content_at_the_named_path() {
        let dir = tempfile::tempdir().unwrap();
        let (catalog, _thread) = catalog_with(dir.path(), &[]);
        let rt = rt();
        let bob = || addr("@bob@far.example");
        rt.block_on(catalog.apply_remote_share(
            "far.example",
            bob(),
            vec![remote("a.flac", 1), remote("b.flac", 2)],
        ))
        .unwrap();
        // Same path, new content: replaced in place, counted once.
        let applied = rt
            .block_on(catalog.apply_remote_share("far.example", bob(), vec![remote("b.flac", 3)]))
            .unwrap();
        assert_eq!((applied.added, applied.replaced), (0, 1));
        let removed = rt
            .block_on(catalog.apply_remote_unshare(
                "far.example",
                bob(),
                vec![
                    (format!("{:064x}", 1), "a.flac".to_owned()),
                    // The old content of b.flac: stale, so b.flac stays.
                    (format!("{:064x}", 2), "b.flac".to_owned()),
                    (format!("{:064x}", 9), "nowhere.flac".to_owned()),
                ],
            ))
            .unwrap();
        assert_eq!(removed, 1);
        assert_eq!(
            found(&rt, &catalog, "ext:flac"),
            ["b.flac @bob@far.example"]
        );
        assert_eq!(rt.block_on(catalog.remote_count("far.example")).unwrap(), 1);
        // Another instance's bob cannot unshare far.example's.
        let other = rt
            .block_on(catalog.apply_remote_unshare(
                "near.example",
                addr("@bob@near.example"),
                vec![(format!("{:064x}", 3), "b.flac".to_owned())],
            ))
            .unwrap();
        assert_eq!(other, 0);
        assert_eq!(found(&rt, &catalog, "ext:flac").len(), 1);
    }

    #[test]
    fn pulling_a_catalog_twice_adds_nothing_and_drops_what_was_unshared_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let (catalog, _thread) = catalog_with(dir.path(), &[]);
        let rt = rt();
        let pages = |paths: &[(&str, &str, u32)]| CatalogPage {
            files: paths.iter().map(|(o, p, n)| page_file(o, p, *n)).collect(),
            next: None,
        };
        let full = [
            ("@bob@far.example", "a.flac", 1),
            ("@carol@far.example", "b.flac", 2),
            ("@bob@far.example", "c.flac", 3),
        ];
        for round in 0..2 {
            let pull = rt
                .block_on(catalog.begin_catalog_pull("far.example"))
                .unwrap();
            let first = rt
                .block_on(catalog.apply_catalog_page("far.example", pages(&full[..2])))
                .unwrap();
            let second = rt
                .block_on(catalog.apply_catalog_page("far.example", pages(&full[2..])))
                .unwrap();
            let dropped = rt
                .block_on(catalog.finish_catalog_pull("far.example", pull))
                .unwrap();
            let (added, unchanged) = (
                first.added + second.added,
                first.unchanged + second.unchanged,
            );
            assert_eq!(
                (added, unchanged, dropped),
                if round == 0 { (3, 0, 0) } else { (0, 3, 0) }
            );
            assert_eq!(found(&rt, &catalog, "ext:flac").len(), 3);
        }
        // c.flac was unshared while apart; a share arrives during the next pull.
        let pull = rt
            .block_on(catalog.begin_catalog_pull("far.example"))
            .unwrap();
        rt.block_on(catalog.apply_catalog_page("far.example", pages(&full[..2])))
            .unwrap();
        rt.block_on(catalog.apply_remote_share(
            "far.example",
            addr("@bob@far.example"),
            vec![remote("d.flac", 4)],
        ))
        .unwrap();
        let dropped = rt
            .block_on(catalog.finish_catalog_pull("far.example", pull))
            .unwrap();
        assert_eq!(dropped, 1);
        assert_eq!(
            found(&rt, &catalog, "ext:flac"),
            [
                "a.flac @bob@far.example",
                "b.flac @carol@far.example",
                "d.flac @bob@far.example"
            ]
        );
        assert_eq!(rt.block_on(catalog.remote_count("far.example")).unwrap(), 3);
        // A pull overtaken by a later one drops nothing.
        let old = rt
            .block_on(catalog.begin_catalog_pull("far.example"))
            .unwrap();
        let _new = rt
            .block_on(catalog.begin_catalog_pull("far.example"))
            .unwrap();
        assert_eq!(
            rt.block_on(catalog.finish_catalog_pull("far.example", old))
                .unwrap(),
            0
        );
        assert_eq!(found(&rt, &catalog, "ext:flac").len(), 3);
    }

    #[test]
    fn a_peer_past_its_bound_gets_no_new_files_but_may_replace_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (catalog, _thread) = catalog_with(dir.path(), &[]);
        let catalog = catalog.with_max_remote_files_per_peer(3);
        let rt = rt();
        let bob = || addr("@bob@far.example");
        let files: Vec<RemoteFile> = (0..5).map(|i| remote(&format!("f{i}.flac"), i)).collect();
        let applied = rt
            .block_on(catalog.apply_remote_share("far.example", bob(), files))
            .unwrap();
        assert_eq!((applied.added, applied.over_bound), (3, 2));
        assert_eq!(catalog.over_bound_total(), 2);
        assert_eq!(rt.block_on(catalog.remote_count("far.example")).unwrap(), 3);
        assert_eq!(found(&rt, &catalog, "ext:flac").len(), 3);
        // Known paths may change content at the bound; another peer has its own bound.
        let applied = rt
            .block_on(catalog.apply_remote_share("far.example", bob(), vec![remote("f0.flac", 9)]))
            .unwrap();
        assert_eq!((applied.replaced, applied.over_bound), (1, 0));
        // A new owner's files past the bound leave no trace of the owner either.
        let applied = rt
            .block_on(catalog.apply_remote_share(
                "far.example",
                addr("@eve@far.example"),
                vec![remote("e.flac", 5)],
            ))
            .unwrap();
        assert_eq!(applied.over_bound, 1);
        assert!(rt
            .block_on(catalog.owner(&addr("@eve@far.example")))
            .unwrap()
            .is_none());
        let other = rt
            .block_on(catalog.apply_remote_share(
                "near.example",
                addr("@dan@near.example"),
                vec![remote("g.flac", 7)],
            ))
            .unwrap();
        assert_eq!(other.added, 1);
        // Room made by an unshare is room for new files.
        rt.block_on(catalog.apply_remote_unshare(
            "far.example",
            bob(),
            vec![(format!("{:064x}", 1), "f1.flac".to_owned())],
        ))
        .unwrap();
        let applied = rt
            .block_on(catalog.apply_remote_share("far.example", bob(), vec![remote("f4.flac", 4)]))
            .unwrap();
        assert_eq!(applied.added, 1);
        assert_eq!(catalog.over_bound_total(), 3);
    }

    #[test]
    fn forgetting_a_peer_drops_its_files_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let (catalog, _thread) = catalog_with(dir.path(), &["blue.flac"]);
        let rt = rt();
        rt.block_on(catalog.set_shared(1, vec!["blue.flac".into()], true))
            .unwrap();
        for domain in ["far.example", "near.example"] {
            rt.block_on(catalog.apply_remote_share(
                domain,
                addr(&format!("@bob@{domain}")),
                // blue.flac has the content of alice's.
                vec![remote("blue.flac", 0), remote("red.flac", 2)],
            ))
            .unwrap();
        }
        assert_eq!(rt.block_on(catalog.forget_peer("Far.Example")).unwrap(), 2);
        assert_eq!(
            found(&rt, &catalog, "ext:flac"),
            [
                "blue.flac @Alice@rose.example",
                "red.flac @bob@near.example"
            ]
        );
        let q = rosewire_shell::query::parse_query("blue").unwrap();
        let hits = rt.block_on(catalog.search(&q, 1)).unwrap();
        assert_eq!(hits[0].copies, 2, "the local copy and near.example's");
        assert!(rt
            .block_on(catalog.owner(&addr("@bob@far.example")))
            .unwrap()
            .is_none());
        assert_eq!(rt.block_on(catalog.forget_peer("far.example")).unwrap(), 0);
    }

    #[test]
    fn the_shared_page_lists_local_shared_files_only_in_a_stable_order() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<&'static str> = vec!["a", "b", "c", "d", "e"];
        let (catalog, _thread) = catalog_with(dir.path(), &paths);
        let rt = rt();
        rt.block_on(catalog.set_shared(
            1,
            vec!["a".into(), "c".into(), "d".into(), "e".into()],
            true,
        ))
        .unwrap();
        rt.block_on(catalog.apply_remote_share(
            "far.example",
            addr("@bob@far.example"),
            vec![remote("remote.flac", 1)],
        ))
        .unwrap();
        assert_eq!(rt.block_on(catalog.shared_count()).unwrap(), 4);
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = rt.block_on(catalog.shared_page(after, 3)).unwrap();
            assert!(page.files.len() <= 3);
            seen.extend(page.files.iter().map(|f| (f.owner.clone(), f.path.clone())));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let want: Vec<(String, String)> = ["a", "c", "d", "e"]
            .iter()
            .map(|p| ("@Alice@rose.example".to_owned(), p.to_string()))
            .collect();
        assert_eq!(seen, want);
        // The wire form: the cursor is a string, and it comes back as it went.
        let page = rt.block_on(catalog.shared_page(None, 2)).unwrap();
        let json = serde_json::to_value(&page).unwrap();
        assert!(json["next"].is_string(), "{json}");
        let back: CatalogPage = serde_json::from_value(json).unwrap();
        assert_eq!(back, page);
        assert!("nope".parse::<Cursor>().is_err());
    }

    #[test]
    fn sharing_by_path_changes_only_those_files_and_owners_carry_their_address() {
        let dir = tempfile::tempdir().unwrap();
        let (catalog, _thread) = catalog_with(dir.path(), &["a.txt", "b.txt", "sub/a.txt"]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let changed = rt
            .block_on(catalog.set_shared(1, vec!["a.txt".into(), "sub/a.txt".into()], true))
            .unwrap();
        assert_eq!(changed, 2);
        let (page, shared) = rt
            .block_on(catalog.browse(OwnerKey::Local(1), &PageStart::Offset(0)))
            .unwrap();
        assert_eq!(shared, 2);
        let paths: Vec<&str> = page.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "sub/a.txt"]);
        assert_eq!(page.files[0].owner.to_string(), "@Alice@rose.example");
        assert_eq!(page.files[0].name, "a.txt");
        let mine = rt.block_on(catalog.my_files(1)).unwrap();
        let private: Vec<&str> = mine
            .iter()
            .filter(|f| !f.shared)
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(private, ["b.txt"]);
    }

    #[test]
    fn the_shared_count_covers_every_owner_and_only_shared_files() {
        let dir = tempfile::tempdir().unwrap();
        let (catalog, _thread) = catalog_with(dir.path(), &["a.txt", "b.txt", "c.txt"]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(catalog.shared_count()).unwrap(), 0);
        rt.block_on(catalog.store.call(|conn| {
            users::authenticate(conn, "Bob", "SHA256:b", "k", 0)?;
            files::upsert(conn, 2, "d.txt", 1, &format!("{:064x}", 9), 0, None)?;
            Ok(())
        }))
        .unwrap();
        rt.block_on(catalog.set_shared(1, vec!["a.txt".into(), "c.txt".into()], true))
            .unwrap();
        rt.block_on(catalog.set_shared(2, vec!["d.txt".into()], true))
            .unwrap();
        assert_eq!(rt.block_on(catalog.shared_count()).unwrap(), 3);
    }
}
