//! `/browse @user@domain [--json]`: one user's shared files.

use rosewire_shell::query::UserFilter;
use serde_json::json;

use super::{json_line, store_failed, CmdError, Ctx, Output};
use crate::chat::address;
use crate::library::human_size;
use crate::store;

pub async fn run(ctx: &Ctx<'_>, user: &UserFilter, json: bool) -> Result<Output, CmdError> {
    let domain = ctx.app.domain();
    if let Some(other) = user
        .domain
        .as_deref()
        .filter(|d| !d.eq_ignore_ascii_case(domain))
    {
        return Err(CmdError::Failed(format!(
            "@{}@{other} is on another instance; browsing other instances is not available yet",
            user.nick
        )));
    }
    let nick = user.nick.clone();
    let found = ctx
        .app
        .store
        .call(move |conn| {
            let Some((id, nick)) = store::users::user_id_by_nick(conn, &nick)? else {
                return Ok(None);
            };
            Ok(Some((nick, store::files::list_shared(conn, id)?)))
        })
        .await
        .map_err(store_failed)?;
    let Some((nick, files)) = found else {
        return Err(CmdError::Failed(format!(
            "no user {} here",
            address(&user.nick, domain)
        )));
    };
    let owner = address(&nick, domain);
    let lines = if json {
        files
            .iter()
            .map(|f| json_line(json!({"id": f.hash, "name": f.name, "path": f.path, "size": f.size, "owner": owner})))
            .collect()
    } else if files.is_empty() {
        vec![format!("{owner} shares nothing")]
    } else {
        files
            .iter()
            .map(|f| {
                format!(
                    "{}  {:>10}  {}",
                    &f.hash[..super::library::SHORT_ID.min(f.hash.len())],
                    human_size(f.size),
                    f.path
                )
            })
            .collect()
    };
    Ok(Output::lines(lines))
}
