//! Downloads: a shared file chosen by a user, where its bytes are, and how they travel.
//!
//! A [`Download`] names a file by its content ([`Download::hash`], the network id) and says
//! where its bytes are ([`Source`]): in a library on this instance today, on another instance
//! next (a relay over HTTP, verified chunk by chunk).

use crate::catalog::CatalogFile;
use crate::quota::QuotaError;
use crate::store::StoreError;

/// Bytes read and written at a time when copying or streaming a file.
pub const COPY_CHUNK: usize = 256 * 1024;

/// A shared file chosen for download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// Where the bytes are.
    pub source: Source,
    /// The file name, as the user saw it and as `downloads/` will call it.
    pub name: String,
    pub size: u64,
    /// Hex BLAKE3 of the content; checked as the bytes are copied.
    pub hash: String,
}

/// Where a download's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// In the `library/` of a user of this instance.
    Local {
        owner_id: i64,
        /// Path inside the owner's `library/`.
        path: String,
    },
}

impl From<&CatalogFile> for Download {
    fn from(f: &CatalogFile) -> Self {
        Download {
            source: Source::Local {
                owner_id: f.owner_id,
                path: f.path.clone(),
            },
            name: f.name.clone(),
            size: f.size,
            hash: f.id.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{name:?} is {size} bytes; the largest file allowed is {max} bytes")]
    TooLarge { name: String, size: u64, max: u64 },
    #[error("{name:?} ({size} bytes) does not fit in your quota: {used} of {quota} bytes used")]
    OverQuota {
        name: String,
        size: u64,
        used: u64,
        quota: u64,
    },
    #[error("{name:?} changed on its owner's disk (its content no longer matches id {hash}); nothing was saved")]
    Changed { name: String, hash: String },
    #[error("{name:?} is no longer shared: its owner unshared, replaced, renamed or removed it; search again")]
    NotShared { name: String },
    #[error("{name:?} changed since it was shared (its bytes no longer match id {hash}); nothing was sent; ask its owner to share it again")]
    Replaced { name: String, hash: String },
    #[error("cannot copy {name:?}: {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Limit(#[from] QuotaError),
}
