//! `/ignore [@user@domain]`: lists whom you ignore, or adds one. An ignored user's chat lines
//! and private messages no longer reach you, in any session, until `/unignore`.

use rosewire_shell::Address;

use super::{messages_failed, CmdError, Ctx, Output};
use crate::messages::MAX_IGNORED;
use crate::store::messages::IgnoreOutcome;

pub async fn run(ctx: &Ctx<'_>, user: Option<&Address>) -> Result<Output, CmdError> {
    let messages = &ctx.app.messages;
    let Some(user) = user else {
        let list = messages
            .ignored(ctx.user.id)
            .await
            .map_err(messages_failed)?;
        if list.is_empty() {
            return Ok(Output::lines(vec![format!(
                "you ignore nobody; {} @user@domain stops someone's chat lines and messages",
                ctx.cmd("ignore")
            )]));
        }
        return Ok(Output::lines(list));
    };
    let full = Address::new(
        &user.nick,
        user.domain.as_deref().unwrap_or(ctx.app.domain()),
    );
    if full.is_on(ctx.app.domain()) && full.nick.eq_ignore_ascii_case(&ctx.user.nick) {
        return Err(CmdError::Failed("you cannot ignore yourself".to_owned()));
    }
    let line = match messages
        .ignore(ctx.user.id, &full)
        .await
        .map_err(messages_failed)?
    {
        IgnoreOutcome::Added => format!(
            "ignoring {full}: their chat lines and messages no longer reach you ({} undoes it)",
            ctx.cmd("unignore")
        ),
        IgnoreOutcome::Already => format!("you ignore {full} already"),
        IgnoreOutcome::Full { .. } => {
            return Err(CmdError::Failed(format!(
                "you ignore {MAX_IGNORED} users already, the most there may be; {} someone first",
                ctx.cmd("unignore")
            )))
        }
    };
    Ok(Output::lines(vec![line]))
}
