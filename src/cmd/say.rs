//! `/say TEXT` (and plain text in the shell): a chat line to everyone.

use super::{CmdError, Ctx, Output};
use crate::store::ChatKind;

pub async fn run(ctx: &Ctx<'_>, text: &str) -> Result<Output, CmdError> {
    post(ctx, ChatKind::Say, text).await
}

/// Says `text` as the session's user; shared with `/me`.
pub(super) async fn post(ctx: &Ctx<'_>, kind: ChatKind, text: &str) -> Result<Output, CmdError> {
    ctx.app
        .chat
        .post(&ctx.user.nick, kind, text)
        .await
        .map_err(|e| CmdError::Failed(e.to_string()))?;
    Ok(Output::default())
}
