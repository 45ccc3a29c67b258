//! `/me ACTION`: an action line (`* alice waves`).

use super::{say, CmdError, Ctx, Output};
use crate::store::ChatKind;

pub async fn run(ctx: &Ctx<'_>, action: &str) -> Result<Output, CmdError> {
    say::post(ctx, ChatKind::Me, action).await
}
