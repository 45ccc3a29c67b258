//! `/keys [--json]`, `/keys add KEY`, `/keys remove FINGERPRINT`: the SSH keys that may log
//! in as this user.

use rosewire_shell::command::KeysCommand;
use russh::keys::{HashAlg, PublicKey};
use serde_json::json;

use super::{json_line, rfc3339, CmdError, Ctx, Output};
use crate::chat::unix_now;
use crate::store::{self, StoreError};

pub async fn run(ctx: &Ctx<'_>, command: KeysCommand) -> Result<Output, CmdError> {
    match command {
        KeysCommand::List { json } => list(ctx, json).await,
        KeysCommand::Add { key } => add(ctx, &key).await,
        KeysCommand::Remove { fingerprint } => remove(ctx, fingerprint).await,
    }
}

async fn list(ctx: &Ctx<'_>, json: bool) -> Result<Output, CmdError> {
    let user_id = ctx.user.id;
    let keys = ctx
        .app
        .store
        .call(move |conn| store::users::list_keys(conn, user_id))
        .await
        .map_err(failed)?;
    let lines = keys
        .iter()
        .map(|k| {
            let algorithm = k.public_key.split_whitespace().next().unwrap_or("?");
            let current = k.fingerprint == ctx.user.fingerprint;
            if json {
                json_line(json!({
                    "fingerprint": k.fingerprint,
                    "algorithm": algorithm,
                    "added": rfc3339(k.added_at),
                    "current": current,
                }))
            } else {
                format!(
                    "{}  {algorithm}  added {}{}",
                    k.fingerprint,
                    &rfc3339(k.added_at)[..10],
                    if current { "  (this session)" } else { "" }
                )
            }
        })
        .collect();
    Ok(Output::lines(lines))
}

async fn add(ctx: &Ctx<'_>, text: &str) -> Result<Output, CmdError> {
    let key = PublicKey::from_openssh(text.trim()).map_err(|e| {
        CmdError::Usage(format!(
            "/keys add: {:?} is not an OpenSSH public key ({e}); paste one line of a .pub file",
            shorten(text)
        ))
    })?;
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let openssh = key
        .to_openssh()
        .map_err(|e| CmdError::Failed(format!("cannot encode key: {e}")))?;
    let (user_id, fp) = (ctx.user.id, fingerprint.clone());
    ctx.app
        .store
        .call(move |conn| store::users::add_key(conn, user_id, &fp, &openssh, unix_now()))
        .await
        .map_err(failed)?;
    tracing::info!(nick = %ctx.user.nick, %fingerprint, "key added");
    Ok(Output::lines(vec![format!(
        "added key {fingerprint}; it can now log in as {}",
        ctx.user.nick
    )]))
}

async fn remove(ctx: &Ctx<'_>, fingerprint: String) -> Result<Output, CmdError> {
    let user_id = ctx.user.id;
    let fp = fingerprint.clone();
    ctx.app
        .store
        .call(move |conn| store::users::remove_key(conn, user_id, &fp))
        .await
        .map_err(failed)?;
    tracing::info!(nick = %ctx.user.nick, %fingerprint, "key removed");
    Ok(Output::lines(vec![format!("removed key {fingerprint}")]))
}

fn failed(e: StoreError) -> CmdError {
    CmdError::Failed(e.to_string())
}

/// At most the first 40 characters of what the user pasted, for an error message.
fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}
