//! `/keys [--json]`, `/keys add KEY`, `/keys remove FINGERPRINT`: the SSH keys that may log
//! in as this user; `/keys @user@domain`: another user's public keys.
//!
//! A key joins an account only once it has proven itself: `/keys add` gives a one-time code,
//! and logging in once with the new key as `NICK+CODE` moves it to the user's keys (see
//! `store::users::confirm_key`). Until then the key belongs to nobody.

use rand::Rng;
use rosewire_shell::command::KeysCommand;
use russh::keys::{HashAlg, PublicKey};
use serde_json::json;

use super::{json_line, rfc3339, CmdError, Ctx, Output};
use crate::chat::unix_now;
use crate::store::users::{PendingKey, Removed, PENDING_KEY_TTL_SECS};
use crate::store::{KeyRefusal, StoreError};

/// Characters of a confirmation code: RFC 4648 base32, upper case (no 0, 1, 8 or 9 to
/// misread).
const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Length of a confirmation code: 8 base32 characters are 40 random bits. The code only
/// binds the key's holder to this account; the holder must still sign with the key.
const CODE_LEN: usize = 8;

pub async fn run(ctx: &Ctx<'_>, command: KeysCommand) -> Result<Output, CmdError> {
    match command {
        KeysCommand::List { json } => list(ctx, json).await,
        KeysCommand::Add { key } => add(ctx, &key).await,
        KeysCommand::Remove { fingerprint } => remove(ctx, fingerprint).await,
        KeysCommand::Of { user } => of(ctx, &user).await,
    }
}

/// `user`'s public keys as `authorized_keys` lines, each with the user's address as its
/// comment: what `age -R` takes to encrypt to them. From the user's home for a remote user
/// (the profile behind the WebFinger answer, keys checked against their fingerprints).
async fn of(ctx: &Ctx<'_>, user: &rosewire_shell::Address) -> Result<Output, CmdError> {
    let profile = super::whois::profile_of(ctx, user).await?;
    let lines: Vec<String> = profile
        .keys
        .iter()
        .filter_map(|k| {
            let mut fields = k.public_key.split_whitespace();
            let (kind, blob) = (fields.next()?, fields.next()?);
            Some(format!("{kind} {blob} {}", profile.address))
        })
        .collect();
    if lines.is_empty() {
        return Err(CmdError::Failed(format!("{} has no keys", profile.address)));
    }
    Ok(Output::lines(lines))
}

async fn list(ctx: &Ctx<'_>, json: bool) -> Result<Output, CmdError> {
    let (keys, pending) = ctx
        .app
        .users
        .keys(ctx.user.id, unix_now())
        .await
        .map_err(failed)?;
    let mut lines: Vec<String> = keys
        .iter()
        .map(|k| {
            let algorithm = algorithm(&k.public_key);
            let current = k.fingerprint == ctx.user.fingerprint;
            if json {
                json_line(json!({
                    "fingerprint": k.fingerprint,
                    "algorithm": algorithm,
                    "added": rfc3339(k.added_at),
                    "current": current,
                    "pending": false,
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
    lines.extend(pending.iter().map(|p| {
        if json {
            json_line(json!({
                "fingerprint": p.fingerprint,
                "algorithm": algorithm(&p.public_key),
                "added": rfc3339(p.added_at),
                "current": false,
                "pending": true,
                "login": confirm_login(&ctx.user.nick, p),
                "expires": rfc3339(p.expires_at),
            }))
        } else {
            format!(
                "{}  {}  waiting: log in with it as {} before {}",
                p.fingerprint,
                algorithm(&p.public_key),
                confirm_login(&ctx.user.nick, p),
                rfc3339(p.expires_at)
            )
        }
    }));
    Ok(Output::lines(lines))
}

/// The algorithm name at the start of an OpenSSH one-line key.
fn algorithm(public_key: &str) -> &str {
    public_key.split_whitespace().next().unwrap_or("?")
}

/// The SSH user name that confirms a pending key.
fn confirm_login(nick: &str, pending: &PendingKey) -> String {
    format!("{nick}+{}", pending.code)
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
    let pending = ctx
        .app
        .users
        .propose_key(ctx.user.id, &fingerprint, &openssh, &new_code(), unix_now())
        .await
        .map_err(failed)?;
    tracing::info!(nick = %ctx.user.nick, %fingerprint, "key proposed");
    let login = confirm_login(&ctx.user.nick, &pending);
    Ok(Output::lines(vec![
        format!(
            "key {fingerprint} waits for proof that you hold it: within {} minutes, log in \
             once with it as {login}, for example",
            PENDING_KEY_TTL_SECS / 60
        ),
        format!("  ssh -i PATH/TO/ITS/PRIVATE/KEY -p PORT {login}@HOST keys"),
        format!(
            "then it logs in as {}; {} remove {fingerprint} cancels it",
            ctx.user.nick,
            ctx.cmd("keys")
        ),
    ]))
}

/// A fresh random confirmation code.
fn new_code() -> String {
    let mut rng = rand::thread_rng();
    (0..CODE_LEN)
        .map(|_| char::from(CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())]))
        .collect()
}

async fn remove(ctx: &Ctx<'_>, fingerprint: String) -> Result<Output, CmdError> {
    let removed = ctx
        .app
        .users
        .remove_key(ctx.user.id, &fingerprint, unix_now())
        .await
        .map_err(failed)?;
    let said = match removed {
        Removed::Key => "removed key",
        Removed::Pending => "cancelled waiting key",
    };
    tracing::info!(nick = %ctx.user.nick, %fingerprint, "{said}");
    Ok(Output::lines(vec![format!("{said} {fingerprint}")]))
}

/// A store error in the user's words: a refusal says what to do instead.
fn failed(e: StoreError) -> CmdError {
    CmdError::Failed(match e {
        StoreError::Keys(KeyRefusal::AlreadyYours { fingerprint }) => {
            format!("key {fingerprint} is already one of your keys")
        }
        StoreError::Keys(KeyRefusal::TooManyPending { waiting }) => format!(
            "{waiting} keys are already waiting for confirmation; confirm one, or cancel one \
             with /keys remove FINGERPRINT"
        ),
        StoreError::Keys(KeyRefusal::NotYours { fingerprint }) => format!(
            "no key {fingerprint} among your keys or those waiting for confirmation; see /keys"
        ),
        StoreError::Keys(KeyRefusal::OnlyKey { fingerprint }) => {
            format!("key {fingerprint} is your only key; add another before removing it")
        }
        e => e.to_string(),
    })
}

/// At most the first 40 characters of what the user pasted, for an error message.
fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}
