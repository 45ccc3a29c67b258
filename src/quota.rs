//! The per-user ledger of work in progress: bytes reserved against the quota, writable
//! handles, replaced files credited to an upload, and the count of files and folders.
//!
//! Bytes are reserved before they are written (an upload's chunks, a `/get` copy) and released
//! when the [`Reservation`] drops, which its owner does only once the file has landed (or
//! failed). A user's usage is then `measured + reserved`, where `measured` is what
//! `Library::usage` reads from the catalog and `downloads/`; `.partial/` is counted through
//! the reservations of the uploads writing it.
//!
//! **Invariant:** a measurement never misses bytes: a reservation is released only after its
//! file is in place and catalogued, and bytes released while a measurement ran are added to it
//! (they may have landed unseen), so the check errs on the side of refusing.
//!
//! Entry counts are walked once per user (on first need, then kept in memory) and kept up to
//! date by the SFTP operations and `/get` that add or remove entries. Two sessions of one user
//! racing on the same path may leave the count off by one until the next start.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::chat::lock;

/// Why the ledger refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error(
        "quota exceeded: {allowed} bytes allowed, {used} used, this upload would add {adding}"
    )]
    Over {
        allowed: u64,
        used: u64,
        adding: u64,
    },
    #[error("too many uploads in progress: at most {max} per user across sessions (library.max_uploads_per_user); close some first")]
    TooManyUploads { max: usize },
    #[error("too many files and folders: at most {max} per user in library/ and downloads/ (library.max_entries); remove some first")]
    TooManyEntries { max: u64 },
    #[error("too many open files: at most {max} per user across sessions (library.max_open_files_per_user); close some first")]
    TooManyOpenFiles { max: usize },
    #[error(
        "the server has too many files open (library.max_open_files = {max}); try again later"
    )]
    ServerOpenFiles { max: usize },
    #[error("cannot read quota usage: {0}")]
    Usage(String),
}

/// Shared by every session of the instance; cheap to clone.
#[derive(Clone, Default)]
pub struct Ledger {
    users: Arc<Mutex<HashMap<i64, UserLedger>>>,
    /// SFTP handles open on the whole instance: each holds a file descriptor or a directory
    /// stream.
    handles: Arc<AtomicUsize>,
}

#[derive(Default)]
struct UserLedger {
    /// Bytes reserved by uploads and `/get`s in progress.
    reserved: u64,
    /// Bytes ever released (wrapping): tells a reservation that bytes may have landed while it
    /// measured.
    released: u64,
    /// Writable handles open, across sessions.
    uploads: usize,
    /// SFTP handles of any kind open, across sessions.
    handles: usize,
    /// Targets whose current size is credited to an upload in progress (once per target).
    credited: HashSet<PathBuf>,
    /// Files and folders in `library/` and `downloads/`, once counted.
    entries: Option<u64>,
    /// Entries being made (mkdir, new uploads, `/get`s in progress).
    pending_entries: u64,
}

/// What a reservation attempt saw when it was refused.
pub struct Refused {
    /// Usage plus everyone else's reservations.
    pub used: u64,
    /// Bytes were released while measuring: measuring again may succeed.
    pub retry: bool,
}

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, HashMap<i64, UserLedger>> {
        lock(&self.users)
    }

    /// Taken before measuring the usage a reservation will be checked against.
    pub fn released(&self, user_id: i64) -> u64 {
        self.lock().get(&user_id).map_or(0, |u| u.released)
    }

    /// An empty reservation, grown later with [`Ledger::try_grow`].
    pub fn reservation(&self, user_id: i64) -> Reservation {
        Reservation {
            ledger: self.clone(),
            user_id,
            bytes: 0,
        }
    }

    /// Grows `r` to at least `to` bytes (and up to `want`, if that fits) when
    /// `used + reserved + growth <= quota`, where `used` was measured after
    /// [`Ledger::released`] returned `released_before`.
    pub fn try_grow(
        &self,
        r: &mut Reservation,
        to: u64,
        want: u64,
        used: u64,
        released_before: u64,
        quota: u64,
    ) -> Result<(), Refused> {
        if to <= r.bytes {
            return Ok(());
        }
        let mut users = self.lock();
        let u = users.entry(r.user_id).or_default();
        let released_meanwhile = u.released.wrapping_sub(released_before);
        let others = u.reserved - r.bytes;
        let used = used
            .saturating_add(released_meanwhile)
            .saturating_add(others);
        let free = quota.saturating_sub(used);
        if to > free {
            return Err(Refused {
                used,
                retry: released_meanwhile > 0,
            });
        }
        let new = want.max(to).min(free);
        u.reserved += new - r.bytes;
        r.bytes = new;
        Ok(())
    }

    /// A writable handle for `user_id`, if fewer than `max` are open. The first upload to
    /// replace `target` gets its current size (`replaced`) as credit: those bytes are counted
    /// already and go away when the upload lands.
    pub fn open_upload(
        &self,
        user_id: i64,
        max: usize,
        target: &Path,
        replaced: u64,
    ) -> Result<UploadSlot, QuotaError> {
        let mut users = self.lock();
        let u = users.entry(user_id).or_default();
        if u.uploads >= max {
            return Err(QuotaError::TooManyUploads { max });
        }
        u.uploads += 1;
        let credited =
            (replaced > 0 && u.credited.insert(target.to_owned())).then(|| target.to_owned());
        Ok(UploadSlot {
            ledger: self.clone(),
            user_id,
            credit: if credited.is_some() { replaced } else { 0 },
            credited,
        })
    }

    /// One more SFTP handle for `user_id`, if fewer than `per_user` are open across their
    /// sessions and fewer than `total` on the instance. Give it back with
    /// [`Ledger::close_handles`] (see [`OpenHandles`]).
    pub fn open_handle(
        &self,
        user_id: i64,
        per_user: usize,
        total: usize,
    ) -> Result<(), QuotaError> {
        let mut users = self.lock();
        let u = users.entry(user_id).or_default();
        if u.handles >= per_user {
            return Err(QuotaError::TooManyOpenFiles { max: per_user });
        }
        self.handles
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < total).then_some(n + 1)
            })
            .map_err(|_| QuotaError::ServerOpenFiles { max: total })?;
        u.handles += 1;
        Ok(())
    }

    /// Gives back `n` handles of `user_id`.
    pub fn close_handles(&self, user_id: i64, n: usize) {
        if n == 0 {
            return;
        }
        let mut users = self.lock();
        if let Some(u) = users.get_mut(&user_id) {
            u.handles = u.handles.saturating_sub(n);
        }
        let _ = self
            .handles
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_sub(n))
            });
    }

    /// The user's entry count, if counted yet.
    pub fn entries(&self, user_id: i64) -> Option<u64> {
        self.lock().get(&user_id).and_then(|u| u.entries)
    }

    /// Records a count walked from the disk, unless another task recorded one first.
    pub fn set_entries(&self, user_id: i64, n: u64) {
        self.lock()
            .entry(user_id)
            .or_default()
            .entries
            .get_or_insert(n);
    }

    /// Room for one more entry: refused once `max` are there or being made.
    pub fn entry_slot(&self, user_id: i64, max: u64) -> Result<EntrySlot, QuotaError> {
        let mut users = self.lock();
        let u = users.entry(user_id).or_default();
        if u.entries.unwrap_or(0) + u.pending_entries >= max {
            return Err(QuotaError::TooManyEntries { max });
        }
        u.pending_entries += 1;
        Ok(EntrySlot {
            ledger: self.clone(),
            user_id,
        })
    }

    /// An entry was made (a file or folder that did not exist).
    pub fn entry_added(&self, user_id: i64) {
        if let Some(n) = self
            .lock()
            .get_mut(&user_id)
            .and_then(|u| u.entries.as_mut())
        {
            *n += 1;
        }
    }

    /// An entry was removed.
    pub fn entry_removed(&self, user_id: i64) {
        if let Some(n) = self
            .lock()
            .get_mut(&user_id)
            .and_then(|u| u.entries.as_mut())
        {
            *n = n.saturating_sub(1);
        }
    }

    #[cfg(test)]
    fn reserved(&self, user_id: i64) -> u64 {
        self.lock().get(&user_id).map_or(0, |u| u.reserved)
    }
}

/// Bytes held against a user's quota until dropped.
pub struct Reservation {
    ledger: Ledger,
    user_id: i64,
    bytes: u64,
}

impl Reservation {
    pub fn user_id(&self) -> i64 {
        self.user_id
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let mut users = self.ledger.lock();
        let u = users.entry(self.user_id).or_default();
        u.reserved = u.reserved.saturating_sub(self.bytes);
        u.released = u.released.wrapping_add(self.bytes);
    }
}

/// A writable handle counted against `library.max_uploads_per_user`, with the credit for the
/// file it replaces, if it got it.
pub struct UploadSlot {
    ledger: Ledger,
    user_id: i64,
    /// Bytes of the replaced file credited to this upload (0 for a new file, or when another
    /// upload to the same target holds the credit).
    pub credit: u64,
    credited: Option<PathBuf>,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut users = self.ledger.lock();
        let u = users.entry(self.user_id).or_default();
        u.uploads = u.uploads.saturating_sub(1);
        if let Some(target) = &self.credited {
            u.credited.remove(target);
        }
    }
}

/// An entry being made, counted against `library.max_entries` until dropped; call
/// [`Ledger::entry_added`] once it exists.
pub struct EntrySlot {
    ledger: Ledger,
    user_id: i64,
}

impl Drop for EntrySlot {
    fn drop(&mut self) {
        if let Some(u) = self.ledger.lock().get_mut(&self.user_id) {
            u.pending_entries = u.pending_entries.saturating_sub(1);
        }
    }
}

/// The handles one SFTP session holds in the ledger; all given back when it is dropped.
pub struct OpenHandles {
    ledger: Ledger,
    user_id: i64,
    held: usize,
}

impl OpenHandles {
    pub fn new(ledger: Ledger, user_id: i64) -> OpenHandles {
        OpenHandles {
            ledger,
            user_id,
            held: 0,
        }
    }

    /// Takes one more handle within the per-user and instance limits.
    pub fn take(&mut self, per_user: usize, total: usize) -> Result<(), QuotaError> {
        self.ledger.open_handle(self.user_id, per_user, total)?;
        self.held += 1;
        Ok(())
    }

    /// Gives one back (a handle was closed).
    pub fn give_back(&mut self) {
        if self.held > 0 {
            self.held -= 1;
            self.ledger.close_handles(self.user_id, 1);
        }
    }
}

impl Drop for OpenHandles {
    fn drop(&mut self) {
        self.ledger.close_handles(self.user_id, self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_and_release_on_drop() {
        let ledger = Ledger::default();
        let before = ledger.released(1);
        let mut a = ledger.reservation(1);
        ledger
            .try_grow(&mut a, 60, 60, 0, before, 100)
            .ok()
            .unwrap();
        let mut b = ledger.reservation(1);
        let refused = ledger.try_grow(&mut b, 50, 50, 0, before, 100).unwrap_err();
        assert_eq!(refused.used, 60);
        assert!(!refused.retry);
        // Another user is not affected.
        let mut other = ledger.reservation(2);
        assert!(ledger.try_grow(&mut other, 100, 100, 0, 0, 100).is_ok());
        drop(a);
        assert_eq!(ledger.reserved(1), 0);
        // Released while measuring: counted as if it had landed, and a retry is suggested.
        let refused = ledger.try_grow(&mut b, 50, 50, 0, before, 100).unwrap_err();
        assert!(refused.retry);
        let now = ledger.released(1);
        assert!(ledger.try_grow(&mut b, 50, 50, 0, now, 100).is_ok());
    }

    #[test]
    fn growth_takes_the_chunk_when_it_fits_and_the_need_otherwise() {
        let ledger = Ledger::default();
        let mut r = ledger.reservation(1);
        ledger.try_grow(&mut r, 10, 40, 0, 0, 100).ok().unwrap();
        assert_eq!(r.bytes(), 40);
        ledger.try_grow(&mut r, 30, 80, 0, 0, 100).ok().unwrap();
        assert_eq!(r.bytes(), 40, "already covered");
        ledger.try_grow(&mut r, 90, 120, 0, 0, 100).ok().unwrap();
        assert_eq!(r.bytes(), 100, "the chunk is cut to what is free");
        assert!(ledger.try_grow(&mut r, 101, 101, 0, 0, 100).is_err());
    }

    #[test]
    fn upload_slots_are_capped_and_credit_a_target_once() {
        let ledger = Ledger::default();
        let target = Path::new("/x/a");
        let first = ledger.open_upload(1, 2, target, 10).unwrap();
        let second = ledger.open_upload(1, 2, target, 10).unwrap();
        assert_eq!((first.credit, second.credit), (10, 0));
        assert_eq!(
            ledger.open_upload(1, 2, target, 10).err(),
            Some(QuotaError::TooManyUploads { max: 2 })
        );
        drop(first);
        assert_eq!(ledger.open_upload(1, 2, target, 10).unwrap().credit, 10);
    }

    #[test]
    fn entry_slots_count_pending_entries() {
        let ledger = Ledger::default();
        ledger.set_entries(1, 1);
        let slot = ledger.entry_slot(1, 3).unwrap();
        let _second = ledger.entry_slot(1, 3).unwrap();
        assert!(ledger.entry_slot(1, 3).is_err());
        ledger.entry_added(1);
        drop(slot);
        assert_eq!(ledger.entries(1), Some(2));
        assert!(ledger.entry_slot(1, 3).is_err(), "one made, one pending");
        ledger.entry_removed(1);
        assert!(ledger.entry_slot(1, 3).is_ok());
    }
}
