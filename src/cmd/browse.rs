//! `/browse @user@domain [--json] [--page N]`: one user's shared files, a page at a time.

use rosewire_shell::Address;
use serde_json::json;

use super::more::{self, Continuation};
use super::{json_line, store_failed, CmdError, Ctx, Output};
use crate::catalog::PageStart;
use crate::library::human_size;

pub async fn run(
    ctx: &mut Ctx<'_>,
    user: &Address,
    json: bool,
    page: usize,
) -> Result<Output, CmdError> {
    let domain = ctx.app.domain().to_owned();
    if !user.is_on(&domain) {
        return Err(CmdError::Failed(format!(
            "{user} is on another instance; browsing other instances is not available yet"
        )));
    }
    let found = ctx
        .app
        .users
        .by_nick(&user.nick)
        .await
        .map_err(store_failed)?;
    let Some((owner_id, nick)) = found else {
        return Err(CmdError::Failed(format!(
            "no user {} here",
            Address::new(&user.nick, &domain)
        )));
    };
    let owner = Address::new(&nick, &domain);
    show(ctx, owner_id, owner, json, page, more::page_start(page)).await
}

/// Shows page `page` of what `owner` shares, starting at `start`; `/more` continues after it.
pub(super) async fn show(
    ctx: &mut Ctx<'_>,
    owner_id: i64,
    owner: Address,
    json: bool,
    page: usize,
    start: PageStart,
) -> Result<Output, CmdError> {
    let (listed, shared) = ctx
        .app
        .catalog
        .browse(owner_id, &start)
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
            lines.push(format!("more files: /more (or --page {})", page + 1));
        }
        lines
    };
    ctx.session.more = Some(Continuation::Browse {
        owner_id,
        owner,
        cursor: more::cursor_after(page, start, &listed.files),
    });
    Ok(Output::lines(lines))
}
