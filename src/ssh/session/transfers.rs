//! The downloads one shell runs into `downloads/`, at most a few at once, with progress.

use super::*;

/// Copies a download into `downloads/` right away (line mode) and says how it went.
pub(super) async fn fetch_now(app: &App, user: &User, download: &Download) -> Message {
    let result = app
        .sources
        .fetch_to_downloads(user.id, download, |_| {})
        .await;
    transfer_message(download, result)
}

pub(super) fn transfer_message(download: &Download, result: Result<String, FetchError>) -> Message {
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

/// Most downloads one shell runs at once.
pub(super) const MAX_TRANSFERS: usize = 4;
/// Least time between two progress updates of one transfer.
pub(super) const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// Transfer events queued for the session before progress updates are dropped.
pub(super) const TRANSFER_EVENTS: usize = 64;

pub(super) enum TransferEvent {
    Progress {
        id: u64,
        bytes: u64,
    },
    Done {
        id: u64,
        result: Result<String, FetchError>,
    },
}

pub(super) struct Transfer {
    download: Download,
    bytes: u64,
    started: std::time::Instant,
}

/// The downloads running for one shell, and the progress they report.
pub(super) struct Transfers {
    next_id: u64,
    running: std::collections::BTreeMap<u64, Transfer>,
    events_tx: tokio::sync::mpsc::Sender<TransferEvent>,
    events_rx: tokio::sync::mpsc::Receiver<TransferEvent>,
}

impl Transfers {
    pub(super) fn new() -> Transfers {
        let (events_tx, events_rx) = tokio::sync::mpsc::channel(TRANSFER_EVENTS);
        Transfers {
            next_id: 0,
            running: Default::default(),
            events_tx,
            events_rx,
        }
    }

    /// Starts copying `download` into the user's `downloads/` in the background.
    pub(super) fn start(
        &mut self,
        app: &App,
        user: &User,
        download: Download,
    ) -> Result<(), Message> {
        if self.running.len() >= MAX_TRANSFERS {
            return Err(Message::error(
                unix_now(),
                &format!("{MAX_TRANSFERS} downloads are running; wait for one to finish"),
            ));
        }
        self.next_id += 1;
        let id = self.next_id;
        let (sources, user_id, events) = (app.sources.clone(), user.id, self.events_tx.clone());
        let progress_events = events.clone();
        let task_download = download.clone();
        let mut last = std::time::Instant::now();
        tokio::spawn(async move {
            let result = sources
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

    pub(super) async fn next(&mut self) -> Option<TransferEvent> {
        self.events_rx.recv().await
    }

    /// Applies an event; a finished transfer yields its message.
    pub(super) fn apply(&mut self, event: TransferEvent) -> Option<Message> {
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
    pub(super) fn activity(&self) -> String {
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
    use crate::transfer::Source;

    #[test]
    fn the_progress_line_shows_bytes_rate_and_eta() {
        let mut transfers = Transfers::new();
        assert_eq!(transfers.activity(), "");
        transfers.running.insert(
            1,
            Transfer {
                download: Download {
                    source: Source::Local {
                        owner_id: 1,
                        path: "a/song.flac".into(),
                    },
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
}
