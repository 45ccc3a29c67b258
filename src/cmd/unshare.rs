//! `/unshare NAME|GLOB`: stop sharing files (they stay in the library).

use super::{share, CmdError, Ctx, Output};

pub async fn run(ctx: &Ctx<'_>, pattern: &str) -> Result<Output, CmdError> {
    share::set_shared(ctx, pattern, false).await
}
