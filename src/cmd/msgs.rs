//! `/msgs`: your private conversations; `/msgs @user@domain [N]`: one of them (its received
//! messages are read then); `/msgs --raw ID`: one message's text exactly as it arrived.
//!
//! `--json` prints one object per conversation, `{"with","messages","unread","last_at"}`, or
//! per message, `{"id","from","to","text","at","state","sealed"}` (and `"reason"` when
//! `state` is `failed`). `state` is `queued`, `delivered` or `failed` for a message you sent,
//! `unread` or `read` for one you received.

use rosewire_shell::command::MsgsCommand;
use rosewire_shell::Address;
use serde_json::json;

use super::{json_line, messages_failed, rfc3339, CmdError, Ctx, Output};
use crate::messages::DEFAULT_SHOWN;
use crate::store::messages::{Conversation, StoredMessage};

pub async fn run(ctx: &Ctx<'_>, command: MsgsCommand) -> Result<Output, CmdError> {
    match command {
        MsgsCommand::List { json } => list(ctx, json).await,
        MsgsCommand::Show { with, count, json } => show(ctx, &with, count, json).await,
        MsgsCommand::Raw { id } => raw(ctx, id).await,
    }
}

async fn list(ctx: &Ctx<'_>, json: bool) -> Result<Output, CmdError> {
    let list = ctx
        .app
        .messages
        .conversations(ctx.user.id)
        .await
        .map_err(messages_failed)?;
    if json {
        return Ok(Output::lines(list.iter().map(conversation_json).collect()));
    }
    if list.is_empty() {
        return Ok(Output::lines(vec![format!(
            "no private messages yet; {} @user@domain TEXT sends one",
            ctx.cmd("msg")
        )]));
    }
    let width = list.iter().map(|c| c.peer.len()).max().unwrap_or(0);
    let mut lines: Vec<String> = list
        .iter()
        .map(|c| {
            let unread = if c.unread > 0 {
                format!(", {} unread", c.unread)
            } else {
                String::new()
            };
            format!(
                "  {:<width$}  {} message{}{unread}, last {}",
                c.peer,
                c.messages,
                if c.messages == 1 { "" } else { "s" },
                rfc3339(c.last_at)
            )
        })
        .collect();
    lines.push(format!("{} @user@domain reads one", ctx.cmd("msgs")));
    Ok(Output::lines(lines))
}

fn conversation_json(c: &Conversation) -> String {
    json_line(json!({
        "with": c.peer,
        "messages": c.messages,
        "unread": c.unread,
        "last_at": rfc3339(c.last_at),
    }))
}

async fn show(
    ctx: &Ctx<'_>,
    with: &Address,
    count: Option<usize>,
    json: bool,
) -> Result<Output, CmdError> {
    let list = ctx
        .app
        .messages
        .conversation(ctx.user.id, with, count.unwrap_or(DEFAULT_SHOWN))
        .await
        .map_err(messages_failed)?;
    let me = Address::new(&ctx.user.nick, ctx.app.domain()).to_string();
    if json {
        return Ok(Output::lines(
            list.iter().map(|m| message_json(m, &me)).collect(),
        ));
    }
    if list.is_empty() {
        let full = Address::new(
            &with.nick,
            with.domain.as_deref().unwrap_or(ctx.app.domain()),
        );
        return Ok(Output::lines(vec![format!(
            "no messages with {full}; {} {full} TEXT sends one",
            ctx.cmd("msg")
        )]));
    }
    Ok(Output::lines(
        list.iter().map(|m| message_line(ctx, m)).collect(),
    ))
}

/// `  12  2026-11-30T10:00:00Z  <@bob@b.example> hi` for a received message,
/// `  13  ...  to @bob@b.example: hi  [queued]` for a sent one.
fn message_line(ctx: &Ctx<'_>, m: &StoredMessage) -> String {
    let text = if m.sealed {
        format!(
            "(sealed; read it with: {})",
            ctx.app.messages.read_sealed_hint(m.id)
        )
    } else {
        m.text.clone()
    };
    let head = format!("  {:>4}  {}  ", m.id, rfc3339(m.at));
    if m.outgoing {
        let state = match &m.reason {
            Some(why) if m.state == "failed" => format!("failed: {why}"),
            _ => m.state.clone(),
        };
        format!("{head}to {}: {text}  [{state}]", m.peer)
    } else {
        format!("{head}<{}> {text}", m.peer)
    }
}

fn message_json(m: &StoredMessage, me: &str) -> String {
    let (from, to) = if m.outgoing {
        (me, m.peer.as_str())
    } else {
        (m.peer.as_str(), me)
    };
    let mut object = json!({
        "id": m.id,
        "from": from,
        "to": to,
        "text": m.text,
        "at": rfc3339(m.at),
        "state": m.state,
        "sealed": m.sealed,
    });
    if let Some(why) = m.reason.as_deref().filter(|_| m.state == "failed") {
        object["reason"] = json!(why);
    }
    json_line(object)
}

async fn raw(ctx: &Ctx<'_>, id: i64) -> Result<Output, CmdError> {
    let found = ctx
        .app
        .messages
        .get(ctx.user.id, id)
        .await
        .map_err(messages_failed)?;
    let Some(message) = found else {
        return Err(CmdError::Failed(format!(
            "you have no message {id}; {} lists your conversations",
            ctx.cmd("msgs")
        )));
    };
    Ok(Output::lines(
        message.text.lines().map(str::to_owned).collect(),
    ))
}
