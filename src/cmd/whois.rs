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
    let profile = profile_of(ctx, user).await?;
    let lines = if json {
        let doc = serde_json::to_value(ProfileDoc::from(&profile))
            .map_err(|e| CmdError::Failed(format!("cannot encode the profile: {e}")))?;
        vec![json_line(doc)]
    } else {
        text(&profile)
    };
    Ok(Output::lines(lines))
}

/// `user`'s profile: from here for a local user, else fetched from the user's own instance.
pub(super) async fn profile_of(ctx: &Ctx<'_>, user: &Address) -> Result<Profile, CmdError> {
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
    Ok(profile)
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::app::{App, User};
    use crate::cmd::SessionState;
    use crate::store::Store;

    fn whois(app: &App, user: &Address, json: bool) -> Result<Output, CmdError> {
        let me = User {
            id: 1,
            nick: "bob".into(),
            fingerprint: "SHA256:b".into(),
        };
        let mut session = SessionState::default();
        let ctx = Ctx {
            app,
            user: &me,
            session: &mut session,
            exec: true,
        };
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(run(&ctx, user, json))
    }

    #[test]
    fn a_remote_whois_goes_through_the_fetcher_federation_sets() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _thread) = Store::open(&dir.path().join("db")).unwrap();
        let config = crate::config::Config {
            data_dir: dir.path().to_owned(),
            ..crate::config::Config::default()
        };
        let key = crate::fed::identity::InstanceKey::generate(&config.base_url());
        let app = App::new(config, db, std::sync::Arc::new(key)).unwrap();
        let carol = Address::parse("@carol@other.example").unwrap();
        let before = whois(&app, &carol, false).unwrap_err().to_string();
        assert!(before.contains("cannot reach other instances"), "{before}");
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        assert!(app
            .users
            .set_remote_profiles(Arc::new(move |address: Address| {
                seen.lock().unwrap().push(address.to_string());
                Box::pin(async move {
                    Ok(Profile {
                        address,
                        joined: 0,
                        shared_files: 7,
                        keys: vec![],
                        bio: "from afar".into(),
                    })
                })
            })));
        let shown = whois(&app, &carol, false).unwrap().lines.join("\n");
        assert!(shown.contains("@carol@other.example"), "{shown}");
        assert!(shown.contains("shares  7 files"), "{shown}");
        assert!(shown.contains("bio     from afar"), "{shown}");
        let json = whois(&app, &carol, true).unwrap().lines;
        let doc: serde_json::Value = serde_json::from_str(&json[0]).unwrap();
        assert_eq!(doc["bio"], "from afar");
        assert_eq!(
            *asked.lock().unwrap(),
            ["@carol@other.example", "@carol@other.example"]
        );
    }
}
