//! `/bio`, `/bio TEXT`, `/bio --clear`: the line about yourself that `/whois` shows, here
//! and on other instances. Cleaned and bounded as `profile::Bio` says.

use rosewire_shell::command::BioCommand;

use super::{CmdError, Ctx, Output};
use crate::profile::Bio;
use crate::store::StoreError;

pub async fn run(ctx: &Ctx<'_>, command: BioCommand) -> Result<Output, CmdError> {
    match command {
        BioCommand::Show => show(ctx).await,
        BioCommand::Set { text } => {
            let bio = Bio::new(&text).map_err(|e| CmdError::Failed(e.to_string()))?;
            if bio.as_str().is_empty() {
                return Err(CmdError::Failed(
                    "nothing is left of that bio once controls are dropped; \
                     /bio --clear removes your bio"
                        .to_owned(),
                ));
            }
            set(ctx, &bio).await?;
            Ok(Output::lines(vec![format!("bio set: {}", bio.as_str())]))
        }
        BioCommand::Clear => {
            set(ctx, &Bio::empty()).await?;
            Ok(Output::lines(vec!["bio cleared".to_owned()]))
        }
    }
}

async fn show(ctx: &Ctx<'_>) -> Result<Output, CmdError> {
    let profile = ctx
        .app
        .users
        .profile(&ctx.user.nick)
        .await
        .map_err(failed)?;
    let line = match profile {
        Some(p) if !p.bio.is_empty() => format!("your bio: {}", p.bio),
        _ => format!("you have no bio; {} TEXT sets one", ctx.cmd("bio")),
    };
    Ok(Output::lines(vec![line]))
}

async fn set(ctx: &Ctx<'_>, bio: &Bio) -> Result<(), CmdError> {
    ctx.app
        .users
        .set_bio(ctx.user.id, bio)
        .await
        .map_err(failed)?;
    tracing::info!(nick = %ctx.user.nick, chars = bio.as_str().chars().count(), "bio changed");
    let update = crate::fed::activity::Payload::Profile {
        bio: bio.as_str().to_owned(),
    };
    if let Err(e) = ctx.app.fed.publish(&ctx.user.nick, update).await {
        tracing::warn!("cannot queue the profile update for other instances: {e}");
    }
    Ok(())
}

fn failed(e: StoreError) -> CmdError {
    CmdError::Failed(format!("profiles are unavailable: {e}"))
}

#[cfg(test)]
mod tests {
    use rosewire_shell::command::command_spec;

    use crate::profile::MAX_BIO_CHARS;

    #[test]
    fn help_states_the_bio_bound() {
        let spec = command_spec("bio").unwrap();
        assert!(
            spec.help.contains(&MAX_BIO_CHARS.to_string()),
            "{}",
            spec.help
        );
    }
}
