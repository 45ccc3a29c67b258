//! `/history [N] [--json]`: the last N chat lines (default [`DEFAULT_COUNT`]).

use std::collections::HashSet;

use serde_json::json;

use super::{json_line, rfc3339, CmdError, Ctx, Output};
use crate::chat::{ChatLine, MAX_HISTORY};
use crate::store::ChatKind;

/// Lines shown when no count is given.
const DEFAULT_COUNT: usize = 20;

pub async fn run(ctx: &Ctx<'_>, count: Option<usize>, json: bool) -> Result<Output, CmdError> {
    let count = count.unwrap_or(DEFAULT_COUNT);
    if count == 0 || count > MAX_HISTORY {
        return Err(CmdError::Usage(format!(
            "/history: {count} is out of range; give 1 to {MAX_HISTORY}"
        )));
    }
    let mut lines = ctx
        .app
        .chat
        .history(count)
        .await
        .map_err(|e| CmdError::Failed(format!("cannot read the history: {e}")))?;
    // Nothing from the users you ignore.
    let ignored: HashSet<String> = ctx
        .app
        .messages
        .ignored(ctx.user.id)
        .await
        .map_err(|e| CmdError::Failed(format!("cannot read the history: {e}")))?
        .into_iter()
        .collect();
    lines.retain(|l| !ignored.contains(&l.from.to_string().to_lowercase()));
    let out = if json {
        lines.iter().map(json_of).collect()
    } else {
        lines.iter().map(|l| l.message().plain()).collect()
    };
    Ok(Output::lines(out))
}

fn json_of(line: &ChatLine) -> String {
    let kind = match line.kind {
        ChatKind::Say => "say",
        ChatKind::Me => "me",
    };
    json_line(json!({
        "from": line.from.to_string(),
        "text": line.text,
        "at": rfc3339(line.at),
        "kind": kind,
    }))
}
