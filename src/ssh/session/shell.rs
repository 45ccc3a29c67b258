//! The interactive shell: raw keys in, the screen out, chat and transfers alongside.

use super::*;

pub(super) async fn interactive(
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
    let mut transfers = Transfers::new(sources_for(app, user), app.slots.clone(), user.id);
    let mut shell = Shell::new(ShellConfig {
        term: pty.term,
        cols: pty.cols,
        rows: pty.rows,
        nick: user.nick.clone(),
        status: status(app, &transfers),
    });
    let (opening, mut listener) = opening(app, user).await;
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
                                    if let Err(busy) = transfers.start(download) {
                                        shell.push(Message::error(unix_now(), &busy.to_string()));
                                    }
                                    shell.set_status(status(app, &transfers));
                                }
                                if let Some(action) = reply.transfers {
                                    for m in transfers_reply(&mut transfers, action) {
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
                            if let Some(h) = listener.hear(&event) {
                                heard(app, user, &h).await;
                                shell.push_shared(h.shown);
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
                if let Some(finished) = transfers.apply(event) {
                    shell.push(finished_message(&finished));
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

/// What `/transfers` or `/cancel N` shows, done on this shell's downloads.
fn transfers_reply(transfers: &mut Transfers, action: cmd::TransfersAction) -> Vec<Message> {
    let now = unix_now();
    match action {
        cmd::TransfersAction::List if transfers.is_empty() => {
            vec![Message::output(
                now,
                "no downloads running or waiting; /get starts one",
            )]
        }
        cmd::TransfersAction::List => transfers
            .list(std::time::Instant::now())
            .iter()
            .map(|l| Message::output(now, l))
            .collect(),
        cmd::TransfersAction::Cancel(id) => match transfers.cancel(id) {
            Ok(d) => vec![Message::notice(now, &format!("cancelled get {}", d.name))],
            Err(e) => vec![Message::error(now, &e.to_string())],
        },
    }
}
