//! One task per session channel. It owns everything about the channel: which mode it is in
//! (interactive shell, plain line mode, exec), the shell state, and the chat subscription.

use std::net::SocketAddr;

use rosewire_shell::sanitize::escape_unsafe_in_json;
use rosewire_shell::{
    parse_exec, parse_shell_line, sanitize, Action, Command, Line, Message, Shell, ShellConfig,
    Status,
};
use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::{broadcast, watch};

use crate::app::{App, User};
use crate::chat::{unix_now, Chat, ChatEvent};
use crate::cmd::{self, history::message_of, Ctx, SessionState};
use crate::library::{human_size, Download, FetchError, COPY_CHUNK};

/// The MOTD shown when a shell opens.
const MOTD: &str = include_str!("../../assets/motd.txt");
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
                let (_rx, tx) = channel.split();
                exec(&app, &user, peer, &tx, command, pty.is_some()).await;
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
    };
    match cmd::run(&mut ctx, command).await {
        Ok(out) => Reply {
            messages: out.lines.iter().map(|l| Message::output(now, l)).collect(),
            quit: out.quit,
            download: out.download,
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

/// Turns a chat event into a message for the message area; `None` for events not shown.
fn event_message(event: &ChatEvent, last_replayed: i64) -> Option<Message> {
    match event {
        ChatEvent::Line(line) if line.id > last_replayed => Some(message_of(line)),
        ChatEvent::Line(_) => None,
        ChatEvent::Joined { nick } => Some(Message::notice(unix_now(), &format!("{nick} joined"))),
        ChatEvent::Left { nick } => Some(Message::notice(unix_now(), &format!("{nick} left"))),
    }
}

/// The messages a new shell starts with: the MOTD, then the latest chat lines.
/// Returns them with the id of the last replayed line (live lines up to it are duplicates).
async fn opening(app: &App) -> (Vec<Message>, i64) {
    let now = unix_now();
    let mut messages: Vec<Message> = MOTD.lines().map(|l| Message::notice(now, l)).collect();
    let replay = app.config.chat.replay_lines;
    let history = if replay == 0 {
        Vec::new()
    } else {
        app.chat.history(replay).await.unwrap_or_else(|e| {
            tracing::warn!("cannot replay history: {e}");
            Vec::new()
        })
    };
    let last = history.last().map_or(0, |l| l.id);
    messages.extend(history.iter().map(message_of));
    (messages, last)
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
        activity: transfers.activity(),
    }
}

fn nicks(app: &App) -> Vec<String> {
    app.chat.online().into_iter().map(|o| o.nick).collect()
}

async fn interactive(
    app: &App,
    user: &User,
    mut rx: ChannelReadHalf,
    tx: ChannelWriteHalf<Msg>,
    pty: Pty,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = app.chat.subscribe();
    let _presence = Presence::join(&app.chat, &user.nick);
    let mut state = SessionState::default();
    let mut transfers = Transfers::new();
    let mut shell = Shell::new(ShellConfig {
        term: pty.term,
        cols: pty.cols,
        rows: pty.rows,
        nick: user.nick.clone(),
        status: status(app, &transfers),
    });
    let (opening, last_replayed) = opening(app).await;
    for message in opening {
        shell.push(message);
    }
    shell.set_nicks(nicks(app));
    'session: loop {
        let bytes = shell.render();
        if !bytes.is_empty() && tx.data_bytes(bytes).await.is_err() {
            break;
        }
        tokio::select! {
            msg = rx.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    for action in shell.handle_input(&data) {
                        match action {
                            Action::Submit(line) => {
                                let reply = submit(app, user, &mut state, &line).await;
                                for m in reply.messages {
                                    shell.push(m);
                                }
                                if let Some(download) = reply.download {
                                    if let Err(m) = transfers.start(app, user, download) {
                                        shell.push(m);
                                    }
                                    shell.set_status(status(app, &transfers));
                                }
                                if reply.quit {
                                    break 'session;
                                }
                            }
                            Action::Quit => break 'session,
                        }
                    }
                }
                Some(ChannelMsg::WindowChange { col_width, row_height, .. }) => {
                    let (cols, rows) = clamp_size(col_width, row_height);
                    shell.resize(cols, rows);
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
            event = next_event(&mut events) => {
                let mut next = event;
                // Drain what is already queued so a burst renders once.
                loop {
                    match next {
                        None => break 'session,
                        Some(Ok(event)) => {
                            if matches!(event, ChatEvent::Joined { .. } | ChatEvent::Left { .. }) {
                                shell.set_nicks(nicks(app));
                                shell.set_status(status(app, &transfers));
                            }
                            if let Some(m) = event_message(&event, last_replayed) {
                                shell.push(m);
                            }
                        }
                        Some(Err(missed)) => shell.push(lagged_notice(missed)),
                    }
                    next = match events.try_recv() {
                        Ok(event) => Some(Ok(event)),
                        Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(n)),
                        Err(_) => break,
                    };
                }
            },
            Some(event) = transfers.next() => {
                if let Some(m) = transfers.apply(event) {
                    shell.push(m);
                }
                shell.set_status(status(app, &transfers));
            }
            _ = crate::app::shutting_down(&mut shutdown) => {
                shell.push(shutdown_notice());
                break;
            }
        }
    }
    let mut last = shell.render();
    last.extend(shell.farewell());
    finish(&tx, &last, b"", 0).await;
}

async fn line_mode(
    app: &App,
    user: &User,
    mut rx: ChannelReadHalf,
    tx: ChannelWriteHalf<Msg>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = app.chat.subscribe();
    let _presence = Presence::join(&app.chat, &user.nick);
    let (opening, last_replayed) = opening(app).await;
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
                    if let Some(m) = event_message(&event, last_replayed) {
                        out.extend(plain_lines(&[m]));
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
async fn submit_plain(
    app: &App,
    user: &User,
    state: &mut SessionState,
    line: &str,
    out: &mut Vec<u8>,
) -> bool {
    let reply = submit(app, user, state, line).await;
    out.extend(plain_lines(&reply.messages));
    if let Some(download) = reply.download {
        out.extend(plain_lines(&[fetch_now(app, user, &download).await]));
    }
    reply.quit
}

/// Messages as plain text lines, each ending in `\n`.
fn plain_lines(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(m.plain().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Runs one exec command: output on stdout, the reason for a failure on stderr, and the exit
/// status 0 (success), 1 (the command failed) or 2 (usage error).
async fn exec(
    app: &App,
    user: &User,
    peer: SocketAddr,
    tx: &ChannelWriteHalf<Msg>,
    command: Vec<u8>,
    pty: bool,
) {
    let eol = if pty { "\r\n" } else { "\n" };
    let Ok(command_line) = String::from_utf8(command) else {
        finish(
            tx,
            b"",
            format!("rosewire: the command is not valid UTF-8{eol}").as_bytes(),
            2,
        )
        .await;
        return;
    };
    // Only the command's name: its arguments are users' words (chat lines, queries, keys).
    let name: String = command_line
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(16)
        .collect();
    tracing::info!(%peer, command = %name, "exec");
    if app.config.dev && command_line.trim() == DEV_PANIC_COMMAND {
        panic!("deliberate panic requested with {DEV_PANIC_COMMAND} (dev mode)");
    }
    let parsed = parse_exec(&command_line);
    let json = parsed.as_ref().is_ok_and(Command::json);
    let mut state = SessionState::default();
    let result = match parsed {
        Ok(command) => {
            let mut ctx = Ctx {
                app,
                user,
                session: &mut state,
            };
            cmd::run(&mut ctx, command).await
        }
        Err(e) => Err(cmd::CmdError::Usage(e.to_string())),
    };
    match result {
        Ok(output) if output.download.is_some() => {
            if let Some(download) = &output.download {
                match stream_file(app, tx, download).await {
                    Ok(()) => finish(tx, b"", b"", 0).await,
                    Err(e) => {
                        let err = terminal_lines(&[format!("rosewire: {e}")], false, eol);
                        finish(tx, b"", err.as_bytes(), 1).await;
                    }
                }
            }
        }
        Ok(output) => {
            let out = terminal_lines(&output.lines, json, eol);
            finish(tx, out.as_bytes(), b"", 0).await;
        }
        Err(e) => {
            let err = terminal_lines(&[format!("rosewire: {e}")], false, eol);
            finish(tx, b"", err.as_bytes(), e.exit_status()).await;
        }
    }
}

/// Exec output as a terminal may see it: the one way every exec text (stdout and stderr)
/// leaves. Plain lines are sanitized as the shell sanitizes messages (a line break inside one,
/// as in a list of ids, ends a line); JSON lines keep their value, with each control written
/// as a `\uXXXX` escape, so no bidi override or C1 control reaches the terminal raw.
fn terminal_lines(lines: &[String], json: bool, eol: &str) -> String {
    let mut out = String::new();
    for line in lines {
        if json {
            out.push_str(&escape_unsafe_in_json(line));
            out.push_str(eol);
            continue;
        }
        for part in line.split('\n') {
            out.push_str(&sanitize(part));
            out.push_str(eol);
        }
    }
    out
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

/// Copies a download into `downloads/` right away (line mode) and says how it went.
async fn fetch_now(app: &App, user: &User, download: &Download) -> Message {
    let result = app
        .library
        .fetch_to_downloads(user.id, download, |_| {})
        .await;
    transfer_message(download, result)
}

fn transfer_message(download: &Download, result: Result<String, FetchError>) -> Message {
    match result {
        Ok(saved) => Message::notice(
            unix_now(),
            &format!(
                "saved {} ({}) in downloads/{saved}",
                download.name,
                human_size(download.size)
            ),
        ),
        Err(e) => Message::error(unix_now(), &format!("get {} failed: {e}", download.name)),
    }
}

/// Streams a download's bytes to the exec channel's stdout, checking its hash. A client that
/// stops reading (`| head`) is not an error.
async fn stream_file(
    app: &App,
    tx: &ChannelWriteHalf<Msg>,
    download: &Download,
) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    // Shared now, and proven to be the catalogued file, before a byte is sent.
    let opened = app
        .library
        .open_download(download)
        .await
        .map_err(|e| e.to_string())?;
    let download = &opened.download;
    let mut file = tokio::fs::File::from_std(opened.file);
    let mut hasher = blake3::Hasher::new();
    let mut sent = 0u64;
    loop {
        let mut chunk = vec![0u8; COPY_CHUNK];
        let n = file
            .read(&mut chunk)
            .await
            .map_err(|e| format!("cannot read {:?}: {e}", download.name))?;
        if n == 0 {
            break;
        }
        chunk.truncate(n);
        hasher.update(&chunk);
        if tx.data_bytes(chunk).await.is_err() {
            tracing::debug!(sent, "client stopped reading");
            return Ok(());
        }
        sent += n as u64;
    }
    if hasher.finalize().to_hex().as_str() != download.hash {
        return Err(format!(
            "{:?} changed on its owner's disk while it was sent; the bytes do not match id {}",
            download.name, download.hash
        ));
    }
    tracing::info!(name = %download.name, bytes = sent, "file sent");
    Ok(())
}

/// Most downloads one shell runs at once.
const MAX_TRANSFERS: usize = 4;
/// Least time between two progress updates of one transfer.
const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// Transfer events queued for the session before progress updates are dropped.
const TRANSFER_EVENTS: usize = 64;

enum TransferEvent {
    Progress {
        id: u64,
        bytes: u64,
    },
    Done {
        id: u64,
        result: Result<String, FetchError>,
    },
}

struct Transfer {
    download: Download,
    bytes: u64,
    started: std::time::Instant,
}

/// The downloads running for one shell, and the progress they report.
struct Transfers {
    next_id: u64,
    running: std::collections::BTreeMap<u64, Transfer>,
    events_tx: tokio::sync::mpsc::Sender<TransferEvent>,
    events_rx: tokio::sync::mpsc::Receiver<TransferEvent>,
}

impl Transfers {
    fn new() -> Transfers {
        let (events_tx, events_rx) = tokio::sync::mpsc::channel(TRANSFER_EVENTS);
        Transfers {
            next_id: 0,
            running: Default::default(),
            events_tx,
            events_rx,
        }
    }

    /// Starts copying `download` into the user's `downloads/` in the background.
    fn start(&mut self, app: &App, user: &User, download: Download) -> Result<(), Message> {
        if self.running.len() >= MAX_TRANSFERS {
            return Err(Message::error(
                unix_now(),
                &format!("{MAX_TRANSFERS} downloads are running; wait for one to finish"),
            ));
        }
        self.next_id += 1;
        let id = self.next_id;
        let (library, user_id, events) = (app.library.clone(), user.id, self.events_tx.clone());
        let progress_events = events.clone();
        let task_download = download.clone();
        let mut last = std::time::Instant::now();
        tokio::spawn(async move {
            let result = library
                .fetch_to_downloads(user_id, &task_download, move |bytes| {
                    if last.elapsed() >= PROGRESS_INTERVAL {
                        last = std::time::Instant::now();
                        let _ = progress_events.try_send(TransferEvent::Progress { id, bytes });
                    }
                })
                .await;
            let _ = events.send(TransferEvent::Done { id, result }).await;
        });
        self.running.insert(
            id,
            Transfer {
                download,
                bytes: 0,
                started: std::time::Instant::now(),
            },
        );
        Ok(())
    }

    async fn next(&mut self) -> Option<TransferEvent> {
        self.events_rx.recv().await
    }

    /// Applies an event; a finished transfer yields its message.
    fn apply(&mut self, event: TransferEvent) -> Option<Message> {
        match event {
            TransferEvent::Progress { id, bytes } => {
                if let Some(t) = self.running.get_mut(&id) {
                    t.bytes = bytes;
                }
                None
            }
            TransferEvent::Done { id, result } => {
                let t = self.running.remove(&id)?;
                Some(transfer_message(&t.download, result))
            }
        }
    }

    /// `get NAME 42% 3.1 MiB/s ETA 0:04` for each running transfer.
    fn activity(&self) -> String {
        self.running
            .values()
            .map(|t| {
                let secs = t.started.elapsed().as_secs_f64().max(0.001);
                let rate = t.bytes as f64 / secs;
                let percent = (t.bytes * 100).checked_div(t.download.size).unwrap_or(100);
                let eta = if rate > 0.0 {
                    let left = (t.download.size.saturating_sub(t.bytes) as f64 / rate) as u64;
                    format!("{}:{:02}", left / 60, left % 60)
                } else {
                    "?".to_owned()
                };
                format!(
                    "get {} {percent}% {} of {} {}/s ETA {eta}",
                    t.download.name,
                    human_size(t.bytes),
                    human_size(t.download.size),
                    human_size(rate as u64)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_bytes_rate_and_eta() {
        let mut transfers = Transfers::new();
        assert_eq!(transfers.activity(), "");
        transfers.running.insert(
            1,
            Transfer {
                download: Download {
                    owner_id: 1,
                    path: "a/song.flac".into(),
                    name: "song.flac".into(),
                    size: 10 << 20,
                    hash: "00".into(),
                },
                bytes: 0,
                started: std::time::Instant::now() - std::time::Duration::from_secs(2),
            },
        );
        assert!(transfers
            .apply(TransferEvent::Progress {
                id: 1,
                bytes: 4 << 20
            })
            .is_none());
        let line = transfers.activity();
        assert!(
            line.starts_with("get song.flac 40% 4.0 MiB of 10.0 MiB"),
            "{line}"
        );
        assert!(line.contains("/s ETA 0:0"), "{line}");
        let done = transfers.apply(TransferEvent::Done {
            id: 1,
            result: Ok("song.flac".into()),
        });
        assert!(done.is_some_and(|m| m.plain().contains("saved song.flac")));
        assert_eq!(transfers.activity(), "");
    }

    #[test]
    fn terminal_sizes_are_clamped() {
        assert_eq!(clamp_size(0, 0), DEFAULT_SIZE);
        assert_eq!(clamp_size(5, 2), (MIN_COLS, MIN_ROWS));
        assert_eq!(clamp_size(100_000, 100_000), (MAX_COLS, MAX_ROWS));
        assert_eq!(clamp_size(120, 40), (120, 40));
    }
}
