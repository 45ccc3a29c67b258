//! `/say TEXT` (and plain text in the shell): a chat line to everyone.

use super::{CmdError, Ctx, Output};
use crate::fed::activity::Payload;
use crate::store::ChatKind;

pub async fn run(ctx: &Ctx<'_>, text: &str) -> Result<Output, CmdError> {
    post(ctx, ChatKind::Say, text).await
}

/// Says `text` as the session's user, here and on every peer; shared with `/me`.
pub(super) async fn post(ctx: &Ctx<'_>, kind: ChatKind, text: &str) -> Result<Output, CmdError> {
    let line = ctx
        .app
        .chat
        .post(&ctx.user.nick, kind, text)
        .await
        .map_err(|e| CmdError::Failed(e.to_string()))?;
    // The line as stored (sanitized and bounded) is what travels.
    let text = line.text.clone();
    let payload = match kind {
        ChatKind::Say => Payload::Say { text },
        ChatKind::Me => Payload::Action { text },
    };
    if let Err(e) = ctx.app.fed.publish(&ctx.user.nick, payload).await {
        // Said here; only the other instances miss it.
        tracing::warn!("cannot queue the line for other instances: {e}");
    }
    Ok(Output::default())
}
