//! `/whois @user@domain [--json]`: a user's profile, from this instance or from the user's
//! own (through `App::users`).
//!
//! `--json` prints one object, the same as `GET /api/s2s/user/{address}` serves:
//! `{"address","nick","domain","joined","shared_files","keys":[{"fingerprint","public_key"}],
//! "bio"}` (see `crate::profile`).

use rosewire_shell::Address;

use super::{json_line, rfc3339, store_failed, CmdError, Ctx, Output};
use crate::profile::{Profile, ProfileDoc};

pub async fn run(ctx: &Ctx<'_>, user: &Address, json: bool) -> Result<Output, CmdError> {
    let domain = ctx.app.domain();
    let profile = if user.is_on(domain) {
        let found = ctx
            .app
            .users
            .profile(&user.nick)
            .await
            .map_err(store_failed)?;
        found.ok_or_else(|| {
            CmdError::Failed(format!(
                "no user {} here; /who lists who is online",
                Address::new(&user.nick, domain)
            ))
        })?
    } else {
        ctx.app
            .users
            .remote_profile(user)
            .await
            .map_err(|e| CmdError::Failed(format!("cannot show {user}: {e}")))?
    };
    let lines = if json {
        let doc = serde_json::to_value(ProfileDoc::from(&profile))
            .map_err(|e| CmdError::Failed(format!("cannot encode the profile: {e}")))?;
        vec![json_line(doc)]
    } else {
        text(&profile)
    };
    Ok(Output::lines(lines))
}

/// The profile as aligned lines.
fn text(profile: &Profile) -> Vec<String> {
    let mut lines = vec![
        profile.address.to_string(),
        format!("  home    {}", profile.domain()),
        format!("  joined  {}", rfc3339(profile.joined)),
        format!("  shares  {} files", profile.shared_files),
    ];
    lines.extend(profile.keys.iter().map(|k| {
        let algorithm = k.public_key.split_whitespace().next().unwrap_or("?");
        format!("  key     {}  {algorithm}", k.fingerprint)
    }));
    lines.push(if profile.bio.is_empty() {
        "  bio     (none)".to_owned()
    } else {
        format!("  bio     {}", profile.bio)
    });
    lines
}
