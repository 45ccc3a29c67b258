//! The catalog as the commands see it: search, browse, look up by id, a user's own files,
//! share and unshare. The one place where catalog reads are made, so that remote catalogs
//! can join here later.
//!
//! **Boundary:** commands get [`CatalogFile`]s, never database rows; the store's
//! `FileRecord` is converted here.

use std::collections::HashSet;

use rosewire_shell::query::Query;
use rosewire_shell::Address;

use crate::store::files::{self, FileRecord};
use crate::store::{Store, StoreError};

pub use crate::store::files::{PageStart, Totals};

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
    /// The local user id of the owner: where the bytes are.
    pub owner_id: i64,
    /// Offered to others (always true in search, browse and lookups by id).
    pub shared: bool,
}

impl CatalogFile {
    fn from_record(f: FileRecord, domain: &str) -> CatalogFile {
        CatalogFile {
            owner: Address::new(&f.owner_nick, domain),
            owner_id: f.owner_id,
            id: f.hash,
            name: f.name,
            path: f.path,
            size: f.size,
            shared: f.shared,
        }
    }
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
}

impl Catalog {
    pub fn new(store: Store, domain: &str) -> Catalog {
        Catalog {
            store,
            domain: domain.to_owned(),
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

    /// A page of what `owner_id` shares from `start`, and how many files they share in all.
    pub async fn browse(
        &self,
        owner_id: i64,
        start: &PageStart,
    ) -> Result<(Page, u64), StoreError> {
        let from = start.clone();
        let (records, shared) = self
            .store
            .call(move |conn| {
                Ok((
                    read_page(conn, owner_id, true, &from)?,
                    files::count_shared(conn, owner_id)?,
                ))
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

    /// How many files this instance's users share, all owners together.
    pub async fn shared_count(&self) -> Result<u64, StoreError> {
        self.store.call(|conn| files::count_all_shared(conn)).await
    }
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
            .block_on(catalog.browse(1, &PageStart::Offset(0)))
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
