//! `/browse @user@domain [--json] [--page N]`: one user's shared files, a page at a time.

use rosewire_shell::Address;
use serde_json::json;

use super::more::{self, Continuation};
use super::{json_line, store_failed, CmdError, Ctx, Output};
use crate::catalog::{OwnerKey, PageStart};
use crate::library::human_size;

pub async fn run(
    ctx: &mut Ctx<'_>,
    user: &Address,
    json: bool,
    page: usize,
) -> Result<Output, CmdError> {
    let domain = ctx.app.domain().to_owned();
    let found = ctx.app.catalog.owner(user).await.map_err(store_failed)?;
    let Some((key, owner)) = found else {
        return Err(CmdError::Failed(if user.is_on(&domain) {
            format!("no user {} here", Address::new(&user.nick, &domain))
        } else {
            format!("no shared file of {user} has reached this instance")
        }));
    };
    show(ctx, key, owner, json, page, more::page_start(page)).await
}

/// Shows page `page` of what `owner` shares, starting at `start`; `/more` continues after it.
pub(super) async fn show(
    ctx: &mut Ctx<'_>,
    key: OwnerKey,
    owner: Address,
    json: bool,
    page: usize,
    start: PageStart,
) -> Result<Output, CmdError> {
    let (listed, shared) = ctx
        .app
        .catalog
        .browse(key, &start)
        .await
        .map_err(store_failed)?;
    let lines = if json {
        listed
            .files
            .iter()
            .map(|f| json_line(json!({"id": f.id, "name": f.name, "path": f.path, "size": f.size, "owner": owner.to_string()})))
            .collect()
    } else if shared == 0 {
        vec![format!("{owner} shares nothing")]
    } else {
        let mut lines: Vec<String> = listed
            .files
            .iter()
            .map(|f| {
                format!(
                    "{}  {:>10}  {}",
                    &f.id[..super::library::SHORT_ID.min(f.id.len())],
                    human_size(f.size),
                    f.path
                )
            })
            .collect();
        if lines.is_empty() {
            lines.push("no more files".to_owned());
        }
        lines.push(format!("{owner} shares {shared} files"));
        if listed.more {
            lines.push(ctx.more_hint("files", page + 1));
        }
        lines
    };
    ctx.session.more = Some(Continuation::Browse {
        key,
        owner,
        cursor: more::cursor_after(page, start, &listed.files),
    });
    Ok(Output::lines(lines))
}
