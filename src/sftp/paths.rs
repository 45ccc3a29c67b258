//! Virtual paths: what a client names, resolved lexically inside the user's own tree.
//!
//! The client sees `/` holding exactly `library/` and `downloads/`. Every path, relative or
//! absolute, is normalised here without touching the disk: `.` is dropped, `..` climbs but
//! never above `/`, and the result is one of [`VPath`]'s three places. Only then is it mapped
//! to a real path under the user's directory, refusing any symlink on the way
//! ([`real_path`]).
//!
//! **Invariant:** a [`VPath`] can only name something inside the user's `library/` or
//! `downloads/`: its components are plain names (no `/`, `.`, `..`, NUL or control bytes).

use std::path::{Path, PathBuf};

use rosewire_shell::sanitize::is_unsafe_char;

/// Longest path a client may send, in bytes (Linux's PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest single name in a path, in bytes (NAME_MAX of common file systems).
pub const MAX_NAME_BYTES: usize = 255;

/// The top-level folder names.
pub const LIBRARY: &str = "library";
pub const DOWNLOADS: &str = "downloads";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("invalid path {0:?}: control characters are not allowed in names")]
    ControlCharacter(String),
    #[error("invalid path {0:?}: not valid UTF-8")]
    NotUtf8(String),
    #[error("path too long: {0} bytes, at most {MAX_PATH_BYTES}")]
    PathTooLong(usize),
    #[error("name too long: {0:?}, at most {MAX_NAME_BYTES} bytes")]
    NameTooLong(String),
    #[error("no such file: {0} (the root holds only /library and /downloads)")]
    OutsideTree(String),
    #[error("{0}: / is read-only, only /library and /downloads exist there")]
    RootReadOnly(String),
    #[error("symbolic links are not followed: {0}")]
    Symlink(String),
    #[error(
        "invalid name {name:?}: {code} is an invisible control that can make a name display \
         differently from what it is; choose a name without it"
    )]
    UnsafeCharacter { name: String, code: String },
}

/// Which of the user's two trees a path is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Library,
    Downloads,
}

impl Area {
    pub fn name(self) -> &'static str {
        match self {
            Area::Library => LIBRARY,
            Area::Downloads => DOWNLOADS,
        }
    }
}

/// A resolved virtual path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VPath {
    /// `/`, the virtual root.
    Root,
    /// `/library/...` or `/downloads/...`; `rel` is empty for the folder itself.
    In { area: Area, rel: Vec<String> },
}

impl VPath {
    /// The path relative to the area's folder, `/`-separated (as the catalog stores it).
    pub fn rel(&self) -> String {
        match self {
            VPath::Root => String::new(),
            VPath::In { rel, .. } => rel.join("/"),
        }
    }

    /// The area and a non-empty relative path: something inside `library/` or `downloads/`.
    pub fn entry(&self) -> Option<(Area, String)> {
        match self {
            VPath::In { area, rel } if !rel.is_empty() => Some((*area, rel.join("/"))),
            _ => None,
        }
    }
}

impl std::fmt::Display for VPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VPath::Root => f.write_str("/"),
            VPath::In { area, rel } => {
                write!(f, "/{}", area.name())?;
                for name in rel {
                    write!(f, "/{name}")?;
                }
                Ok(())
            }
        }
    }
}

/// Normalises `path` lexically: the components of the absolute virtual path it names.
/// Relative paths are taken from `/`; `..` at `/` stays at `/`.
pub fn normalize(path: &str) -> Result<Vec<String>, PathError> {
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::PathTooLong(path.len()));
    }
    if path.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter(path.to_owned()));
    }
    // russh-sftp decodes names lossily: a replacement character means bytes we can't name.
    if path.contains(char::REPLACEMENT_CHARACTER) {
        return Err(PathError::NotUtf8(path.to_owned()));
    }
    let mut parts: Vec<String> = Vec::new();
    for name in path.split('/') {
        match name {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name if name.len() > MAX_NAME_BYTES => {
                return Err(PathError::NameTooLong(name.to_owned()))
            }
            name => parts.push(name.to_owned()),
        }
    }
    Ok(parts)
}

/// The virtual path string for normalised components (`/` for none).
pub fn display(parts: &[String]) -> String {
    format!("/{}", parts.join("/"))
}

/// Resolves a client's path to a place in the user's tree.
pub fn resolve(path: &str) -> Result<VPath, PathError> {
    let mut parts = normalize(path)?;
    if parts.is_empty() {
        return Ok(VPath::Root);
    }
    let area = match parts[0].as_str() {
        LIBRARY => Area::Library,
        DOWNLOADS => Area::Downloads,
        _ => return Err(PathError::OutsideTree(display(&parts))),
    };
    parts.remove(0);
    Ok(VPath::In { area, rel: parts })
}

/// Resolves the path of something about to be created or changed: as [`resolve`], but a new
/// name directly under `/` is refused as a write to the read-only root, and so is a name
/// holding a character that the shell would strip before showing it (a bidi override such
/// as U+202E, which makes `gpj.exe` read as `exe.jpg`, or another control): such a name
/// would show differently in every listing than what it is.
pub fn resolve_for_write(path: &str) -> Result<VPath, PathError> {
    let resolved = match resolve(path) {
        Err(PathError::OutsideTree(shown)) if shown.matches('/').count() == 1 => {
            return Err(PathError::RootReadOnly(shown))
        }
        other => other?,
    };
    if let VPath::In { rel, .. } = &resolved {
        for name in rel {
            if let Some(c) = name.chars().find(|c| is_unsafe_char(*c)) {
                return Err(PathError::UnsafeCharacter {
                    name: name.clone(),
                    code: format!("U+{:04X}", u32::from(c)),
                });
            }
        }
    }
    Ok(resolved)
}

/// The real folders of one user's two areas.
#[derive(Debug, Clone)]
pub struct Roots {
    pub library: PathBuf,
    pub downloads: PathBuf,
}

impl Roots {
    pub fn of(&self, area: Area) -> &Path {
        match area {
            Area::Library => &self.library,
            Area::Downloads => &self.downloads,
        }
    }
}

/// The real path of `area`/`rel`, refusing if any existing component below the area's folder
/// is a symlink (the last component may be missing: it may be about to be created).
/// Blocking: call from a blocking task.
pub fn real_path(
    roots: &Roots,
    area: Area,
    rel: &[String],
    shown: &VPath,
) -> Result<PathBuf, PathError> {
    let mut path = roots.of(area).to_path_buf();
    let mut checking = true;
    for name in rel {
        path.push(name);
        if checking {
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(PathError::Symlink(shown.to_string()))
                }
                Ok(_) => {}
                // Missing: nothing further down exists either; the operation reports it.
                Err(_) => checking = false,
            }
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `input` resolves to the virtual path `expected`, or to an error whose message contains it.
    #[track_caller]
    fn check(input: &str, expected: &str) {
        let got = match resolve(input) {
            Ok(v) => v.to_string(),
            Err(e) => format!("error: {e}"),
        };
        assert!(
            match expected.strip_prefix("error: ") {
                Some(message) => got.starts_with("error: ") && got.contains(message),
                None => got == expected,
            },
            "resolve({input:?}) = {got:?}, expected {expected:?}"
        );
    }

    #[test]
    fn virtual_paths_resolve_inside_the_tree() {
        let cases = [
            ("", "/"),
            (".", "/"),
            ("/", "/"),
            ("..", "/"),
            ("/../..", "/"),
            ("library", "/library"),
            ("./library/", "/library"),
            ("//library//a///b", "/library/a/b"),
            ("/library/a/../b", "/library/b"),
            ("/library/./a/./b/.", "/library/a/b"),
            ("library/..", "/"),
            ("downloads/x.bin", "/downloads/x.bin"),
            ("/library/../downloads/x", "/downloads/x"),
            ("/library/../../library/x", "/library/x"),
            ("/library/a b/ü.txt", "/library/a b/ü.txt"),
            ("/library/...", "/library/..."),
            ("/library/.hidden", "/library/.hidden"),
            // Escapes are clamped at the virtual root, then refused there.
            ("/library/../../x", "error: no such file: /x"),
            ("../../../etc/passwd", "error: no such file: /etc/passwd"),
            ("/etc/x", "error: no such file: /etc/x"),
            ("/Library", "error: no such file: /Library"),
            (".partial", "error: no such file: /.partial"),
            // Odd bytes.
            ("/library/a\0b", "error: control characters"),
            ("/library/a\nb", "error: control characters"),
            ("/library/\u{1b}[31m", "error: control characters"),
            ("/library/a\u{7f}", "error: control characters"),
            ("/library/\u{fffd}", "error: not valid UTF-8"),
        ];
        for (input, expected) in cases {
            check(input, expected);
        }
    }

    #[test]
    fn new_names_at_the_root_are_refused_as_writes() {
        assert_eq!(resolve_for_write("/library/x"), resolve("/library/x"));
        assert_eq!(
            resolve_for_write("/library/../../x"),
            Err(PathError::RootReadOnly("/x".into()))
        );
        assert_eq!(
            resolve_for_write("/x/y"),
            Err(PathError::OutsideTree("/x/y".into()))
        );
    }

    #[test]
    fn new_names_with_bidi_controls_are_refused() {
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            let path = format!("/library/photo{c}gpj.exe");
            let err = resolve_for_write(&path).unwrap_err();
            let code = format!("U+{:04X}", u32::from(c));
            assert_eq!(
                err,
                PathError::UnsafeCharacter {
                    name: format!("photo{c}gpj.exe"),
                    code: code.clone()
                }
            );
            let message = err.to_string();
            assert!(message.contains(&code), "{message}");
            assert!(
                !message.contains(c),
                "the message shows the raw control: {message}"
            );
            assert!(resolve_for_write(&format!("/library/{c}dir/x")).is_err());
            // Reading (and renaming away from) such a name still works.
            assert!(resolve(&path).is_ok());
        }
        assert!(resolve_for_write("/library/ünïcödé 日本.txt").is_ok());
    }

    #[test]
    fn overlong_paths_and_names_are_refused() {
        check(
            &format!("/library/{}", "a".repeat(MAX_NAME_BYTES)),
            &format!("/library/{}", "a".repeat(MAX_NAME_BYTES)),
        );
        check(
            &format!("/library/{}", "a".repeat(MAX_NAME_BYTES + 1)),
            "error: name too long",
        );
        check(&"/a".repeat(MAX_PATH_BYTES), "error: path too long");
    }

    #[test]
    fn real_paths_refuse_symlinks_on_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots {
            library: dir.path().join("library"),
            downloads: dir.path().join("downloads"),
        };
        std::fs::create_dir_all(roots.library.join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc", roots.library.join("link")).unwrap();
        let real = |p: &str| {
            let v = resolve(p).unwrap();
            let VPath::In { area, rel } = &v else {
                panic!("{p}")
            };
            real_path(&roots, *area, rel, &v)
        };
        assert_eq!(
            real("/library/sub/new").unwrap(),
            roots.library.join("sub/new")
        );
        assert_eq!(
            real("/library/missing/deeper").unwrap(),
            roots.library.join("missing/deeper")
        );
        assert_eq!(
            real("/library/link/passwd"),
            Err(PathError::Symlink("/library/link/passwd".into()))
        );
        assert_eq!(
            real("/library/link"),
            Err(PathError::Symlink("/library/link".into()))
        );
    }
}
