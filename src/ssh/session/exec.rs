//! One exec command: plain or JSON output, sanitized, on stdout; the reason for a failure on
//! stderr; `get` streams the file's bytes.

use super::*;

/// How long `msg` waits for its text on stdin before it gives up.
const STDIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs one exec command: output on stdout, the reason for a failure on stderr, and the exit
/// status 0 (success), 1 (the command failed) or 2 (usage error).
pub(super) async fn exec(
    app: &App,
    user: &User,
    peer: SocketAddr,
    rx: &mut ChannelReadHalf,
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
    let parsed = match parse_exec(&command_line) {
        // `msg @u@d < note`, `... | msg --sealed @u@d`: the text comes on stdin.
        Ok(Command::Msg {
            to,
            text: None,
            sealed,
        }) => {
            let limits = &app.config.messages;
            let limit = if sealed {
                limits.max_sealed_bytes
            } else {
                limits.max_text_bytes
            };
            match read_stdin(rx, limit).await {
                Ok(text) => Ok(Command::Msg {
                    to,
                    text: Some(text),
                    sealed,
                }),
                Err(why) => {
                    let err = terminal_lines(&[format!("rosewire: {why}")], false, eol);
                    finish(tx, b"", err.as_bytes(), 1).await;
                    return;
                }
            }
        }
        other => other,
    };
    let json = parsed.as_ref().is_ok_and(Command::json);
    let mut state = SessionState::default();
    let result = match parsed {
        Ok(command) => {
            let mut ctx = Ctx {
                app,
                user,
                session: &mut state,
                exec: true,
            };
            cmd::run(&mut ctx, command).await
        }
        Err(e) => Err(cmd::CmdError::Usage(e.to_string())),
    };
    match result {
        Ok(output) if output.download.is_some() => {
            if let Some(download) = &output.download {
                let _slot = match wait_for_slot(app, user, tx, eol).await {
                    Ok(slot) => slot,
                    Err(full) => {
                        let err = terminal_lines(&[format!("rosewire: {full}")], false, eol);
                        finish(tx, b"", err.as_bytes(), 1).await;
                        return;
                    }
                };
                // A client that vanishes while its window is full would leave the send
                // waiting for ever, holding the slot: its channel closing ends the transfer.
                let sources = sources_for(app, user);
                let sent = tokio::select! {
                    sent = stream_file(&sources, tx, download, output.offset) => sent,
                    () = closed(rx) => {
                        tracing::info!(name = %download.name, "client went away mid-download");
                        return;
                    }
                };
                match sent {
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
            let message = rosewire_shell::command::exec_wording(&e.to_string());
            let err = terminal_lines(&[format!("rosewire: {message}")], false, eol);
            finish(tx, b"", err.as_bytes(), e.exit_status()).await;
        }
    }
}

/// Waits for one of the user's download slots, saying on stderr how many of their downloads
/// are ahead whenever that changes.
async fn wait_for_slot(
    app: &App,
    user: &User,
    tx: &ChannelWriteHalf<Msg>,
    eol: &str,
) -> Result<transfer::Slot, transfer::LineFull> {
    let (places_tx, mut places) = tokio::sync::mpsc::channel(transfer::MAX_WAITING_PER_USER + 1);
    let acquire = app.slots.acquire(user.id, move |ahead| {
        let _ = places_tx.try_send(ahead);
    });
    tokio::pin!(acquire);
    loop {
        tokio::select! {
            slot = &mut acquire => return slot,
            Some(ahead) = places.recv() => {
                let line = format!(
                    "rosewire: waiting for a download slot: {ahead} of your downloads ahead{eol}"
                );
                let _ = tx.extended_data_bytes(1, line.into_bytes()).await;
            }
        }
    }
}

/// Resolves when the channel closes or its connection ends (stdin's EOF and data do not
/// count: `get` takes no input).
async fn closed(rx: &mut ChannelReadHalf) {
    loop {
        match rx.wait().await {
            None | Some(ChannelMsg::Close) => return,
            Some(_) => {}
        }
    }
}

/// The exec channel's stdin up to its end, as UTF-8, when it holds at most `limit` bytes.
async fn read_stdin(rx: &mut ChannelReadHalf, limit: usize) -> Result<String, String> {
    let mut bytes = Vec::new();
    let deadline = tokio::time::Instant::now() + STDIN_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, rx.wait()).await {
            Err(_) => {
                return Err(format!(
                "no end of stdin within {} s; pipe the message in, or give it on the command line",
                STDIN_TIMEOUT.as_secs()
            ))
            }
            Ok(Some(ChannelMsg::Data { data })) => {
                bytes.extend_from_slice(&data);
                if bytes.len() > limit {
                    return Err(format!(
                        "the message on stdin is over {limit} bytes, the limit; nothing was sent"
                    ));
                }
            }
            Ok(Some(ChannelMsg::Eof | ChannelMsg::Close) | None) => break,
            Ok(Some(_)) => {}
        }
    }
    String::from_utf8(bytes).map_err(|_| "the message on stdin is not UTF-8".to_owned())
}

/// Exec output as a terminal may see it: the one way every exec text (stdout and stderr)
/// leaves. Plain lines are sanitized as the shell sanitizes messages (a line break inside one,
/// as in a list of ids, ends a line); JSON lines keep their value, with each control written
/// as a `\uXXXX` escape, so no bidi override or C1 control reaches the terminal raw.
pub(super) fn terminal_lines(lines: &[String], json: bool, eol: &str) -> String {
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

/// Streams a download's bytes from `offset` to the exec channel's stdout, verified (a local
/// file's hash, a remote file's chunk groups). A client that stops reading (`| head`) is not
/// an error.
pub(super) async fn stream_file(
    sources: &transfer::Sources,
    tx: &ChannelWriteHalf<Msg>,
    download: &Download,
    offset: u64,
) -> Result<(), String> {
    // Shared now, and proven to be the catalogued file, before a byte is sent.
    let result = match sources.open_from(download, offset).await {
        Ok(bytes) => transfer::copy(bytes, Stdout { tx, sent: 0 }, |_| {}).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(sent) => {
            tracing::info!(name = %download.name, bytes = sent, "file sent");
            Ok(())
        }
        Err(FetchError::Stopped { sent }) => {
            tracing::debug!(sent, "client stopped reading");
            Ok(())
        }
        Err(FetchError::Changed { name, hash }) => Err(format!(
            "{name:?} changed on its owner's disk while it was sent; the bytes do not match id {hash}"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// An exec channel's stdout, as the receiver of a download.
struct Stdout<'a> {
    tx: &'a ChannelWriteHalf<Msg>,
    /// Bytes sent so far.
    sent: u64,
}

impl transfer::Sink for Stdout<'_> {
    /// The bytes sent.
    type Done = u64;

    async fn write(&mut self, chunk: Vec<u8>) -> Result<(), FetchError> {
        let n = chunk.len() as u64;
        if self.tx.data_bytes(chunk).await.is_err() {
            return Err(FetchError::Stopped { sent: self.sent });
        }
        self.sent += n;
        Ok(())
    }

    async fn finish(self) -> Result<u64, FetchError> {
        Ok(self.sent)
    }
}
