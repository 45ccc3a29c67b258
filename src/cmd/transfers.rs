//! `/transfers` and `/cancel N`: a shell's downloads run in the background, so the shell
//! answers these itself (`Output::transfers`). In exec form `get` runs in the foreground and
//! there is nothing to list: Ctrl-C (closing the channel) stops it.

use super::{CmdError, Ctx, Output, TransfersAction};

pub fn run(ctx: &Ctx<'_>, action: TransfersAction) -> Result<Output, CmdError> {
    if ctx.exec {
        return Err(CmdError::Failed(
            "downloads are listed and cancelled in an interactive shell; in exec form `get` \
             runs in the foreground, and closing the connection (Ctrl-C) stops it"
                .to_owned(),
        ));
    }
    Ok(Output {
        transfers: Some(action),
        ..Output::default()
    })
}
