//! `/reply TEXT`: a private message to whoever sent the last one received.

use super::{messages_failed, CmdError, Ctx, Output};

pub async fn run(ctx: &Ctx<'_>, text: &str) -> Result<Output, CmdError> {
    let last = ctx
        .app
        .messages
        .last_sender(ctx.user.id)
        .await
        .map_err(messages_failed)?;
    let Some(to) = last else {
        return Err(CmdError::Failed(format!(
            "no private message to reply to yet; {} @user@domain TEXT sends one",
            ctx.cmd("msg")
        )));
    };
    super::msg::send(ctx, &to, text, false).await
}
