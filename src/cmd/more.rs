//! `/more [--json]`: the next page of the session's last search or listing.

use rosewire_shell::Address;

use super::{browse, library, search, CmdError, Ctx, Output};
use crate::catalog::{CatalogFile, OwnerKey, PageStart};

/// What `/more` continues: the last paged command of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Continuation {
    /// The last `/search` (its state is `SessionState::last_search`).
    Search,
    /// `/library`.
    Library(Cursor),
    /// `/browse` of one owner.
    Browse {
        key: OwnerKey,
        /// Whose files, for the output.
        owner: Address,
        cursor: Cursor,
    },
}

/// Where the next page of a listing starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The page last shown (from 1).
    pub page: usize,
    /// Where the page after it starts: after the last path shown.
    pub next: PageStart,
}

pub async fn run(ctx: &mut Ctx<'_>, json: bool) -> Result<Output, CmdError> {
    let Some(what) = ctx.session.more.clone() else {
        return Err(CmdError::Failed(
            "nothing to continue; use /search, /browse or /library first".into(),
        ));
    };
    match what {
        Continuation::Search => search::more(ctx, json).await,
        Continuation::Library(cursor) => {
            library::show(ctx, json, cursor.page + 1, cursor.next).await
        }
        Continuation::Browse { key, owner, cursor } => {
            browse::show(ctx, key, owner, json, cursor.page + 1, cursor.next).await
        }
    }
}

/// Where page `page` (from 1) of a listing starts.
pub(super) fn page_start(page: usize) -> PageStart {
    PageStart::Offset(page.saturating_sub(1).saturating_mul(search::PAGE_SIZE))
}

/// The cursor after showing `page`: right after its last file, or where it started if it
/// was empty (past the end; `/more` finds nothing again, until files are added).
pub(super) fn cursor_after(page: usize, start: PageStart, files: &[CatalogFile]) -> Cursor {
    Cursor {
        page,
        next: files
            .last()
            .map_or(start, |f| PageStart::After(f.path.clone())),
    }
}
