//! `/share NAME|GLOB`: offer files of the library to the network.

use super::{my_files, store_failed, CmdError, Ctx, Output};
use crate::catalog::CatalogFile;
use crate::fed::activity::{Payload, SharedFile, UnsharedFile, MAX_FILES_PER_ACTIVITY};
use crate::library::{glob_match, is_glob};

pub async fn run(ctx: &Ctx<'_>, pattern: &str) -> Result<Output, CmdError> {
    set_shared(ctx, pattern, true).await
}

/// The files a NAME or GLOB means: a glob matches names (or paths, if it has a `/`); a plain
/// name is an exact path, or else an exact file name.
pub(super) fn select<'f>(files: &'f [CatalogFile], pattern: &str) -> Vec<&'f CatalogFile> {
    let pattern = pattern
        .trim_start_matches('/')
        .trim_start_matches("library/");
    if is_glob(pattern) {
        return files
            .iter()
            .filter(|f| glob_match(pattern, &f.path))
            .collect();
    }
    let by_path: Vec<_> = files.iter().filter(|f| f.path == pattern).collect();
    if !by_path.is_empty() {
        return by_path;
    }
    files.iter().filter(|f| f.name == pattern).collect()
}

/// Shared by `/share` and `/unshare`: flips the flag of the matching files.
pub(super) async fn set_shared(
    ctx: &Ctx<'_>,
    pattern: &str,
    shared: bool,
) -> Result<Output, CmdError> {
    let files = my_files(ctx).await?;
    let matched = select(&files, pattern);
    let verb = if shared { "share" } else { "unshare" };
    if matched.is_empty() {
        return Err(CmdError::Failed(format!(
            "nothing in your library matches {pattern:?}; see /library"
        )));
    }
    let to_change: Vec<&CatalogFile> = matched
        .iter()
        .copied()
        .filter(|f| f.shared != shared)
        .collect();
    if to_change.is_empty() {
        let state = if shared {
            "already shared"
        } else {
            "not shared"
        };
        return Err(CmdError::Failed(format!(
            "{pattern:?} is {state}; nothing changed"
        )));
    }
    let paths: Vec<String> = to_change.iter().map(|f| f.path.clone()).collect();
    ctx.app
        .catalog
        .set_shared(ctx.user.id, paths, shared)
        .await
        .map_err(store_failed)?;
    announce(ctx, &to_change, shared).await;
    tracing::info!(nick = %ctx.user.nick, count = to_change.len(), pattern, "{verb}d");
    let mut lines: Vec<String> = to_change
        .iter()
        .map(|f| format!("{verb}d {}", f.path))
        .collect();
    if to_change.len() > 1 {
        lines.push(format!("{} files {verb}d", to_change.len()));
    }
    Ok(Output::lines(lines))
}

/// Tells the other instances, in activities of at most [`MAX_FILES_PER_ACTIVITY`] files.
async fn announce(ctx: &Ctx<'_>, files: &[&CatalogFile], shared: bool) {
    for chunk in files.chunks(MAX_FILES_PER_ACTIVITY) {
        let payload = if shared {
            Payload::Share {
                files: chunk
                    .iter()
                    .map(|f| SharedFile {
                        id: f.id.clone(),
                        name: f.name.clone(),
                        path: f.path.clone(),
                        size: f.size,
                    })
                    .collect(),
            }
        } else {
            Payload::Unshare {
                files: chunk
                    .iter()
                    .map(|f| UnsharedFile {
                        id: f.id.clone(),
                        path: f.path.clone(),
                    })
                    .collect(),
            }
        };
        if let Err(e) = ctx.app.fed.publish(&ctx.user.nick, payload).await {
            tracing::warn!("cannot queue the change for other instances: {e}");
        }
    }
}
