//! `/msg @user@domain TEXT`: a private message, to a user here or on another instance.
//! In exec form the text may come on stdin (`msg @bob@B < note`), and `msg --sealed` takes
//! age armor there; the session adapter reads it before the command runs.

use rosewire_shell::Address;

use super::{CmdError, Ctx, Output};

pub async fn run(
    ctx: &Ctx<'_>,
    to: &Address,
    text: Option<String>,
    sealed: bool,
) -> Result<Output, CmdError> {
    let Some(text) = text else {
        return Err(CmdError::Usage(if sealed {
            "--sealed reads the age armor from stdin: \
             age -a -R <(ssh HOST keys @bob@B) < note.txt | ssh HOST msg --sealed @bob@B"
                .to_owned()
        } else {
            format!("{}: missing text", ctx.cmd("msg"))
        }));
    };
    send(ctx, to, &text, sealed).await
}

/// Sends and says what became of it: `delivered` here, `queued` for another instance.
pub(super) async fn send(
    ctx: &Ctx<'_>,
    to: &Address,
    text: &str,
    sealed: bool,
) -> Result<Output, CmdError> {
    let sent = ctx
        .app
        .messages
        .send(ctx.user, to, text, sealed)
        .await
        .map_err(|e| CmdError::Failed(e.to_string()))?;
    let what = if sealed { "sealed message" } else { "message" };
    Ok(Output::lines(vec![format!(
        "{what} {} to {}: {}",
        sent.id, sent.to, sent.state
    )]))
}
