//! `/unignore @user@domain`: undoes `/ignore`.

use rosewire_shell::Address;

use super::{messages_failed, CmdError, Ctx, Output};

pub async fn run(ctx: &Ctx<'_>, user: &Address) -> Result<Output, CmdError> {
    let full = Address::new(
        &user.nick,
        user.domain.as_deref().unwrap_or(ctx.app.domain()),
    );
    let removed = ctx
        .app
        .messages
        .unignore(ctx.user.id, &full)
        .await
        .map_err(messages_failed)?;
    if removed {
        Ok(Output::lines(vec![format!("no longer ignoring {full}")]))
    } else {
        Err(CmdError::Failed(format!(
            "you do not ignore {full}; {} lists whom you do",
            ctx.cmd("ignore")
        )))
    }
}
