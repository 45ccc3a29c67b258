//! `/library [--json] [--page N]`: the user's own files, a page at a time.

use serde_json::json;

use super::more::{self, Continuation};
use super::{json_line, store_failed, CmdError, Ctx, Output};
use crate::catalog::PageStart;
use crate::library::human_size;

/// Hex digits of an id shown in listings; `/get` accepts any unique prefix of 8 or more.
pub const SHORT_ID: usize = 12;

pub async fn run(ctx: &mut Ctx<'_>, json: bool, page: usize) -> Result<Output, CmdError> {
    show(ctx, json, page, more::page_start(page)).await
}

/// Shows page `page` of the library, starting at `start`; `/more` continues after it.
pub(super) async fn show(
    ctx: &mut Ctx<'_>,
    json: bool,
    page: usize,
    start: PageStart,
) -> Result<Output, CmdError> {
    let (listed, totals) = ctx
        .app
        .catalog
        .library(ctx.user.id, &start)
        .await
        .map_err(store_failed)?;
    ctx.session.more = Some(Continuation::Library(more::cursor_after(
        page,
        start,
        &listed.files,
    )));
    if json {
        return Ok(Output::lines(
            listed
                .files
                .iter()
                .map(|f| {
                    json_line(json!({
                        "id": f.id, "name": f.name, "path": f.path, "size": f.size, "shared": f.shared,
                    }))
                })
                .collect(),
        ));
    }
    if totals.files == 0 {
        return Ok(Output::lines(vec![
            "your library is empty; upload with: sftp -P PORT you@host, then put FILE library/"
                .to_owned(),
        ]));
    }
    let mut lines: Vec<String> = listed
        .files
        .iter()
        .map(|f| {
            format!(
                "{}  {:>10}  {}  {}",
                &f.id[..SHORT_ID.min(f.id.len())],
                human_size(f.size),
                if f.shared { "shared " } else { "private" },
                f.path
            )
        })
        .collect();
    if lines.is_empty() {
        lines.push("no more files".to_owned());
    }
    lines.push(format!(
        "{} files, {}, {} shared",
        totals.files,
        human_size(totals.bytes),
        totals.shared
    ));
    if listed.more {
        lines.push(ctx.more_hint("files", page + 1));
    }
    Ok(Output::lines(lines))
}
