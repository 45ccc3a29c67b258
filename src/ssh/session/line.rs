//! Plain line mode (`ssh -T`): lines in, plain text lines out, no escape codes.

use std::borrow::Borrow;

use super::*;

pub(super) async fn line_mode(
    app: &App,
    user: &User,
    mut rx: ChannelReadHalf,
    tx: ChannelWriteHalf<Msg>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = app.chat.subscribe();
    let _presence = Presence::join(&app.chat, &user.nick);
    let (opening, mut listener) = opening(app, user).await;
    let mut out = plain_lines(&opening);
    let mut pending: Vec<u8> = Vec::new();
    let mut state = SessionState::default();
    'session: loop {
        if !out.is_empty() && tx.data_bytes(std::mem::take(&mut out)).await.is_err() {
            break;
        }
        tokio::select! {
            msg = rx.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    pending.extend_from_slice(&data);
                    while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                        let raw: Vec<u8> = pending.drain(..=end).collect();
                        let line = String::from_utf8_lossy(&raw);
                        let line = line.trim_end_matches(['\r', '\n']);
                        if submit_plain(app, user, &mut state, line, &mut out).await {
                            break 'session;
                        }
                    }
                    if pending.len() > MAX_PENDING_LINE {
                        pending.clear();
                        out.extend(plain_lines(&[Message::error(
                            unix_now(),
                            &format!("line too long: more than {MAX_PENDING_LINE} bytes without a newline; dropped"),
                        )]));
                    }
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    // A last line without a newline still counts.
                    if !pending.is_empty() {
                        let line = String::from_utf8_lossy(&pending).into_owned();
                        submit_plain(app, user, &mut state, line.trim_end(), &mut out).await;
                    }
                    break;
                }
                Some(_) => {}
            },
            event = next_event(&mut events) => match event {
                None => break,
                Some(Ok(event)) => {
                    if let Some(h) = listener.hear(&event) {
                        heard(app, user, &h).await;
                        out.extend(plain_lines(std::slice::from_ref(&h.shown)));
                    }
                }
                Some(Err(missed)) => out.extend(plain_lines(&[lagged_notice(missed)])),
            },
            _ = crate::app::shutting_down(&mut shutdown) => {
                out.extend(plain_lines(&[shutdown_notice()]));
                break;
            }
        }
    }
    finish(&tx, &out, b"", 0).await;
}

/// Runs a line typed in plain line mode, appending what it printed (and, for `/get`, the
/// outcome of the copy into `downloads/`) to `out`. Returns whether the session should end.
pub(super) async fn submit_plain(
    app: &App,
    user: &User,
    state: &mut SessionState,
    line: &str,
    out: &mut Vec<u8>,
) -> bool {
    let reply = submit(app, user, state, line).await;
    out.extend(plain_lines(&reply.messages));
    if let Some(download) = reply.download {
        out.extend(plain_lines(&[fetch_now(app, user, download).await]));
    }
    // Line mode runs each /get to its end before reading on: there is never one to list.
    match reply.transfers {
        Some(crate::cmd::TransfersAction::List) => out.extend(plain_lines(&[Message::output(
            unix_now(),
            "no downloads running or waiting; /get starts one",
        )])),
        Some(crate::cmd::TransfersAction::Cancel(id)) => {
            out.extend(plain_lines(&[Message::error(
                unix_now(),
                &crate::transfer::NoSuchTransfer(id).to_string(),
            )]))
        }
        None => {}
    }
    reply.quit
}

/// Messages as plain text lines, each ending in `\n`.
pub(super) fn plain_lines<M: Borrow<Message>>(messages: &[M]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(m.borrow().plain().as_bytes());
        out.push(b'\n');
    }
    out
}
