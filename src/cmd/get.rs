//! `/get ID|N`: choose a shared file to download. Delivery is the session's business:
//! into `downloads/` in a shell, to stdout in exec form.

use rosewire_shell::command::GetTarget;

use super::{store_failed, CmdError, Ctx, Output};
use crate::library::{human_size, Download};
use crate::store;

/// Candidates listed when an id prefix is ambiguous.
const MAX_CANDIDATES: usize = 10;

pub async fn run(ctx: &Ctx<'_>, target: GetTarget) -> Result<Output, CmdError> {
    let download = match target {
        GetTarget::Number(n) => by_number(ctx, n)?,
        GetTarget::Id(prefix) => by_id(ctx, prefix).await?,
    };
    Ok(Output {
        download: Some(download),
        ..Output::default()
    })
}

fn by_number(ctx: &Ctx<'_>, n: usize) -> Result<Download, CmdError> {
    let Some(last) = &ctx.session.last_search else {
        return Err(CmdError::Failed(format!(
            "no search results to pick {n} from; /search first, or /get ID"
        )));
    };
    match last.hits.get(n - 1) {
        Some(hit) if !hit.file.hash.is_empty() => Ok(Download::from(&hit.file)),
        _ => Err(CmdError::Failed(format!(
            "there is no result {n}; the last search showed {}",
            last.hits.len()
        ))),
    }
}

async fn by_id(ctx: &Ctx<'_>, prefix: String) -> Result<Download, CmdError> {
    let p = prefix.clone();
    let mut found = ctx
        .app
        .store
        .call(move |conn| store::files::shared_by_hash_prefix(conn, &p, MAX_CANDIDATES * 4))
        .await
        .map_err(store_failed)?;
    found.dedup_by(|a, b| a.hash == b.hash);
    match found.as_slice() {
        [] => Err(CmdError::Failed(format!("no shared file has id {prefix}"))),
        [one] => Ok(Download::from(one)),
        many => {
            let list: Vec<String> = many
                .iter()
                .take(MAX_CANDIDATES)
                .map(|f| format!("  {}  {}  {}", f.hash, human_size(f.size), f.name))
                .collect();
            Err(CmdError::Failed(format!(
                "id {prefix} is ambiguous; it starts {} files' ids:\n{}",
                many.len(),
                list.join("\n")
            )))
        }
    }
}
