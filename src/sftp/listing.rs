//! File attributes and `ls -l` style long names, as SFTP clients show them, and folder
//! listings read a batch at a time.

use std::collections::VecDeque;
use std::fs::{Metadata, ReadDir};
use std::os::unix::fs::MetadataExt;

use russh_sftp::protocol::{File, FileAttributes};

use super::paths::Area;
use super::upload::unix_secs;

/// Files modified longer ago than this show a year instead of a time in long names (as `ls`).
const RECENT_SECS: i64 = 183 * 24 * 3600;
/// Mode bits of the virtual root: a directory the user can list but not change.
const ROOT_MODE: u32 = 0o040_500;
/// Write permission bits, hidden on files in `downloads/` (they can't be written).
const WRITE_BITS: u32 = 0o222;

/// An open folder listing. A real folder is read from the disk as the client asks, one batch
/// per READDIR: a handle holds a directory stream, never the whole listing.
pub enum Listing {
    /// Entries known up front (the virtual root's two).
    Fixed(VecDeque<File>),
    /// A real folder in `area`, shown as owned by `owner`.
    Reading {
        entries: ReadDir,
        area: Area,
        owner: String,
    },
}

impl Listing {
    /// The next entries, at most `max`; empty at the end. Names no client could send back
    /// (not UTF-8, or with control characters) and entries gone since are left out. Blocking.
    pub fn next_batch(&mut self, max: usize) -> std::io::Result<Vec<File>> {
        match self {
            Listing::Fixed(entries) => {
                let n = entries.len().min(max);
                Ok(entries.drain(..n).collect())
            }
            Listing::Reading {
                entries,
                area,
                owner,
            } => {
                let now = i64::from(unix_secs(std::time::SystemTime::now()));
                let mut batch = Vec::new();
                while batch.len() < max {
                    let Some(entry) = entries.next() else { break };
                    let entry = entry?;
                    let name = entry.file_name();
                    let Some(name) = name.to_str().filter(|n| !n.chars().any(char::is_control))
                    else {
                        continue;
                    };
                    let Ok(meta) = entry.metadata() else { continue };
                    batch.push(self::entry(name, attrs(&meta, *area), owner, now));
                }
                Ok(batch)
            }
        }
    }
}

/// Attributes of a real file or folder, as seen in `area`.
pub fn attrs(meta: &Metadata, area: Area) -> FileAttributes {
    let mut mode = meta.mode();
    if area == Area::Downloads && !meta.is_dir() {
        mode &= !WRITE_BITS;
    }
    FileAttributes {
        size: Some(meta.len()),
        uid: Some(meta.uid()),
        gid: Some(meta.gid()),
        permissions: Some(mode),
        atime: Some(unix_secs(meta.accessed().unwrap_or(std::time::UNIX_EPOCH))),
        mtime: Some(unix_secs(meta.modified().unwrap_or(std::time::UNIX_EPOCH))),
        ..FileAttributes::default()
    }
}

/// Attributes of the virtual root.
pub fn root_attrs() -> FileAttributes {
    FileAttributes {
        size: Some(0),
        permissions: Some(ROOT_MODE),
        atime: Some(0),
        mtime: Some(0),
        ..FileAttributes::default()
    }
}

/// A directory entry with its long name, as OpenSSH's sftp-server formats it:
/// `drwx------    2 alice    alice        4096 Nov 29 06:15 name`.
pub fn entry(name: &str, attrs: FileAttributes, owner: &str, now: i64) -> File {
    let longname = longname(name, &attrs, owner, now);
    File {
        filename: name.to_owned(),
        longname,
        attrs,
    }
}

fn longname(name: &str, attrs: &FileAttributes, owner: &str, now: i64) -> String {
    let mode = attrs.permissions.unwrap_or(0);
    let links = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
    format!(
        "{} {links:>3} {owner:<8} {owner:<8} {:>8} {} {name}",
        mode_string(mode),
        attrs.size.unwrap_or(0),
        date(i64::from(attrs.mtime.unwrap_or(0)), now),
    )
}

/// `drwxr-xr-x` and friends.
pub fn mode_string(mode: u32) -> String {
    let kind = match mode & 0o170_000 {
        0o040_000 => 'd',
        0o120_000 => 'l',
        0o100_000 => '-',
        0o010_000 => 'p',
        0o140_000 => 's',
        0o020_000 => 'c',
        0o060_000 => 'b',
        _ => '?',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// `Nov 29 06:15` for recent times, `Nov 29  2025` for older (or future) ones.
fn date(secs: i64, now: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return "Jan  1  1970".to_owned();
    };
    let month = MONTHS[usize::from(u8::from(t.month()) - 1)];
    if (0..RECENT_SECS).contains(&(now - secs)) {
        format!("{month} {:>2} {:02}:{:02}", t.day(), t.hour(), t.minute())
    } else {
        format!("{month} {:>2}  {}", t.day(), t.year())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_look_like_ls() {
        let attrs = FileAttributes {
            size: Some(1234),
            permissions: Some(0o100_600),
            mtime: Some(1_764_396_900), // 2025-11-29 06:15 UTC
            ..FileAttributes::default()
        };
        let now = 1_764_400_000;
        assert_eq!(
            entry("a b.txt", attrs.clone(), "alice", now).longname,
            "-rw-------   1 alice    alice        1234 Nov 29 06:15 a b.txt"
        );
        assert_eq!(
            longname("old", &attrs, "alice", now + 365 * 24 * 3600),
            "-rw-------   1 alice    alice        1234 Nov 29  2025 old"
        );
        assert_eq!(mode_string(0o040_755), "drwxr-xr-x");
        assert_eq!(mode_string(0o120_777), "lrwxrwxrwx");
    }
}
