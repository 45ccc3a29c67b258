//! One task per session channel. It owns everything about the channel: which mode it is in
//! (interactive shell, plain line mode, exec), the shell state, and the chat subscription.
//!
//! - this file: the channel's first requests decide the mode; what the modes share (running
//!   a submitted line, the opening messages, chat events, presence);
//! - `shell.rs`: the interactive shell (a pty);
//! - `line.rs`: plain line mode (a shell without a pty);
//! - `exec.rs`: one command, its output sanitized, `get` streamed to stdout.
//!
//! Downloads run in the domain core ([`crate::transfer`]); a shell shows their progress and
//! outcome.

mod exec;
mod line;
mod shell;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use rosewire_shell::sanitize::escape_unsafe_in_json;
use rosewire_shell::{
    parse_exec, parse_shell_line, sanitize, Action, Command, Line, Message, Shell, ShellConfig,
    Status,
};
use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::{broadcast, watch};

use crate::app::{App, User};
use crate::chat::{unix_now, Chat, ChatEvent, ChatLine};
use crate::cmd::{self, Ctx, SessionState};
use crate::transfer::{self, Download, FetchError, Finished, Transfers};
use exec::exec;
use line::line_mode;
use shell::interactive;

/// The MOTD shown when a shell opens.
const MOTD: &str = include_str!("../../../assets/motd.txt");
/// Terminal sizes outside these bounds are clamped: a client cannot make us allocate a
/// gigantic screen, and a zero size (some clients send it) becomes usable.
const MIN_COLS: u16 = 20;
const MAX_COLS: u16 = 1000;
const MIN_ROWS: u16 = 4;
const MAX_ROWS: u16 = 500;
/// The size assumed when a client sends 0x0.
const DEFAULT_SIZE: (u16, u16) = (80, 24);
/// Bytes of an unfinished line kept in plain line mode before it is refused.
const MAX_PENDING_LINE: usize = 4 * rosewire_shell::command::MAX_LINE_BYTES;
/// In `--dev` mode only, this exec command panics, so tests can check that a panic ends
/// only its own session.
const DEV_PANIC_COMMAND: &str = "__panic";

#[derive(Debug, Clone)]
struct Pty {
    term: String,
    cols: u16,
    rows: u16,
}

fn clamp_size(cols: u32, rows: u32) -> (u16, u16) {
    if cols == 0 || rows == 0 {
        return DEFAULT_SIZE;
    }
    let c = cols.clamp(u32::from(MIN_COLS), u32::from(MAX_COLS));
    let r = rows.clamp(u32::from(MIN_ROWS), u32::from(MAX_ROWS));
    (c as u16, r as u16)
}

/// Marks the user online while a shell is open, even if the task unwinds.
struct Presence<'a> {
    chat: &'a Chat,
    nick: String,
}

impl<'a> Presence<'a> {
    fn join(chat: &'a Chat, nick: &str) -> Presence<'a> {
        chat.join(nick);
        Presence {
            chat,
            nick: nick.to_owned(),
        }
    }
}

impl Drop for Presence<'_> {
    fn drop(&mut self) {
        self.chat.leave(&self.nick);
    }
}

pub async fn run(
    app: App,
    user: User,
    peer: SocketAddr,
    mut channel: Channel<Msg>,
    handle: russh::server::Handle,
    shutdown: watch::Receiver<bool>,
) {
    let mut pty: Option<Pty> = None;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                ..
            } => {
                let (cols, rows) = clamp_size(col_width, row_height);
                pty = Some(Pty { term, cols, rows });
            }
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            } => {
                if let Some(p) = pty.as_mut() {
                    (p.cols, p.rows) = clamp_size(col_width, row_height);
                }
            }
            ChannelMsg::RequestShell { .. } => {
                let (rx, tx) = channel.split();
                match pty {
                    Some(pty) => {
                        tracing::info!(term = %pty.term, cols = pty.cols, rows = pty.rows, "shell opened");
                        interactive(&app, &user, rx, tx, pty, shutdown).await;
                    }
                    None => {
                        tracing::info!("line-mode shell opened");
                        line_mode(&app, &user, rx, tx, shutdown).await;
                    }
                }
                tracing::info!("shell closed");
                return;
            }
            ChannelMsg::Exec { command, .. } => {
                let (mut rx, tx) = channel.split();
                exec(&app, &user, peer, &mut rx, &tx, command, pty.is_some()).await;
                return;
            }
            ChannelMsg::RequestSubsystem { name, .. } => {
                if name == "sftp" {
                    let id = channel.id();
                    let open = crate::sftp::serve(app, user, channel.into_stream()).await;
                    tracing::info!("sftp subsystem closed");
                    // As sshd does: scp and sftp treat a missing exit status as a failure.
                    let _ = handle.exit_status_request(id, 0).await;
                    let _ = handle.eof(id).await;
                    let _ = handle.close(id).await;
                    drop(open);
                }
                return;
            }
            ChannelMsg::Eof | ChannelMsg::Close => return,
            _ => {}
        }
    }
}

/// What submitting a line produced.
#[derive(Default)]
struct Reply {
    messages: Vec<Message>,
    quit: bool,
    /// A file the user asked for, to be copied into `downloads/`.
    download: Option<Download>,
    /// `/transfers` or `/cancel N`, for the shell's own downloads.
    transfers: Option<cmd::TransfersAction>,
}

/// Runs a line typed in a shell (interactive or line mode).
async fn submit(app: &App, user: &User, state: &mut SessionState, line: &str) -> Reply {
    let now = unix_now();
    let command = match parse_shell_line(line) {
        Ok(Line::Empty) => return Reply::default(),
        Ok(Line::Chat(text)) => Command::Say { text },
        Ok(Line::Command(command)) => command,
        Err(e) => {
            return Reply {
                messages: vec![Message::error(now, &e.to_string())],
                ..Reply::default()
            }
        }
    };
    let mut ctx = Ctx {
        app,
        user,
        session: state,
        exec: false,
    };
    match cmd::run(&mut ctx, command).await {
        Ok(out) => Reply {
            messages: out.lines.iter().map(|l| Message::output(now, l)).collect(),
            quit: out.quit,
            download: out.download,
            transfers: out.transfers,
        },
        Err(e) => Reply {
            messages: e
                .to_string()
                .lines()
                .map(|l| Message::error(now, l))
                .collect(),
            ..Reply::default()
        },
    }
}

/// What one session hears of the chat: lines its opening did not replay already, nothing
/// from the users its user ignores, and private news for its user alone.
struct Listener {
    user_id: i64,
    /// Live lines up to this id were replayed by the opening.
    last_replayed: i64,
    /// Lowercase `@nick@domain` of the users ignored.
    ignores: Arc<HashSet<String>>,
}

/// Something a session should show: its message-area form (shared by every session that
/// shows it), and the private message it is, which is read once shown.
struct Heard {
    shown: Arc<Message>,
    message_id: Option<i64>,
}

impl Listener {
    fn hear(&mut self, event: &ChatEvent) -> Option<Heard> {
        let shown = |shown: &Arc<Message>| {
            Some(Heard {
                shown: shown.clone(),
                message_id: None,
            })
        };
        match event {
            ChatEvent::Line { line, .. } if line.id <= self.last_replayed => None,
            ChatEvent::Line { line, .. } if self.ignores(&line.from) => None,
            ChatEvent::Line { shown: s, .. }
            | ChatEvent::Joined { shown: s, .. }
            | ChatEvent::Left { shown: s, .. } => shown(s),
            ChatEvent::Private {
                user_id,
                message_id,
                shown,
            } if *user_id == self.user_id => Some(Heard {
                shown: shown.clone(),
                message_id: *message_id,
            }),
            ChatEvent::Ignores { user_id, list } if *user_id == self.user_id => {
                self.ignores = list.clone();
                None
            }
            ChatEvent::Private { .. } | ChatEvent::Ignores { .. } => None,
        }
    }

    fn ignores(&self, who: &rosewire_shell::Address) -> bool {
        !self.ignores.is_empty() && self.ignores.contains(&who.to_string().to_lowercase())
    }
}

/// Shows what a session heard, and marks a private message read once shown.
async fn heard(app: &App, user: &User, heard: &Heard) {
    if let Some(id) = heard.message_id {
        app.messages.seen(user.id, id).await;
    }
}

/// The messages a new shell starts with: the MOTD, the latest chat lines (none from users
/// ignored), and how many private messages wait unread. Returns them with the session's
/// [`Listener`].
async fn opening(app: &App, user: &User) -> (Vec<Message>, Listener) {
    let now = unix_now();
    let mut messages: Vec<Message> = MOTD.lines().map(|l| Message::notice(now, l)).collect();
    let ignores: HashSet<String> = app
        .messages
        .ignored(user.id)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("cannot read the ignore list: {e}");
            Vec::new()
        })
        .into_iter()
        .collect();
    let replay = app.config.chat.replay_lines;
    let history = if replay == 0 {
        Vec::new()
    } else {
        app.chat.history(replay).await.unwrap_or_else(|e| {
            tracing::warn!("cannot replay history: {e}");
            Vec::new()
        })
    };
    let listener = Listener {
        user_id: user.id,
        last_replayed: history.last().map_or(0, |l| l.id),
        ignores: Arc::new(ignores),
    };
    messages.extend(
        history
            .iter()
            .filter(|l| !listener.ignores(&l.from))
            .map(ChatLine::message),
    );
    match app.messages.unread(user.id).await {
        Ok(0) => {}
        Ok(n) => messages.push(Message::notice(
            now,
            &format!(
                "you have {n} unread private message{}: /msgs lists them",
                if n == 1 { "" } else { "s" }
            ),
        )),
        Err(e) => tracing::warn!("cannot count unread messages: {e}"),
    }
    (messages, listener)
}

/// Receives the next chat event; a lagging subscriber gets a notice instead of the lines it
/// missed. `None` when the chat is gone.
async fn next_event(events: &mut broadcast::Receiver<ChatEvent>) -> Option<Result<ChatEvent, u64>> {
    match events.recv().await {
        Ok(event) => Some(Ok(event)),
        Err(broadcast::error::RecvError::Lagged(n)) => Some(Err(n)),
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

fn lagged_notice(missed: u64) -> Message {
    Message::notice(
        unix_now(),
        &format!("{missed} chat lines were skipped: this session fell behind"),
    )
}

fn shutdown_notice() -> Message {
    Message::notice(
        unix_now(),
        "the server is shutting down; reconnect in a moment",
    )
}

fn status(app: &App, transfers: &Transfers) -> Status {
    Status {
        instance: app.domain().to_owned(),
        online: app.chat.online_count(),
        activity: transfers.activity(std::time::Instant::now()),
    }
}

/// Copies a download into `downloads/` right away (line mode) and says how it went.
async fn fetch_now(app: &App, user: &User, download: Download) -> Message {
    let result = match app.slots.acquire(user.id, |_| {}).await {
        Ok(_slot) => {
            sources_for(app, user)
                .fetch_to_downloads(user.id, &download, |_| {})
                .await
        }
        Err(full) => Err(full.into()),
    };
    finished_message(&Finished { download, result })
}

/// Where `user`'s downloads come from: naming them to the file's home only where the
/// operator chose so (`federation.reveal_downloader`, off by default).
fn sources_for(app: &App, user: &User) -> transfer::Sources {
    if app.config.federation.reveal_downloader {
        app.sources
            .naming(rosewire_shell::Address::new(&user.nick, app.domain()).to_string())
    } else {
        app.sources.clone()
    }
}

/// How a download into `downloads/` went, as a message.
fn finished_message(finished: &Finished) -> Message {
    match finished.report() {
        Ok(saved) => Message::notice(unix_now(), &saved),
        Err(failed) => Message::error(unix_now(), &failed),
    }
}

fn nicks(app: &App) -> Vec<String> {
    app.chat.online().into_iter().map(|o| o.nick).collect()
}

/// Writes the last output, the exit status, and closes the channel.
async fn finish(tx: &ChannelWriteHalf<Msg>, stdout: &[u8], stderr: &[u8], status: u32) {
    if !stdout.is_empty() {
        let _ = tx.data_bytes(stdout.to_vec()).await;
    }
    if !stderr.is_empty() {
        let _ = tx.extended_data_bytes(1, stderr.to_vec()).await;
    }
    let _ = tx.exit_status(status).await;
    let _ = tx.eof().await;
    let _ = tx.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sizes_are_clamped() {
        assert_eq!(clamp_size(0, 0), DEFAULT_SIZE);
        assert_eq!(clamp_size(5, 2), (MIN_COLS, MIN_ROWS));
        assert_eq!(clamp_size(100_000, 100_000), (MAX_COLS, MAX_ROWS));
        assert_eq!(clamp_size(120, 40), (120, 40));
    }
}
