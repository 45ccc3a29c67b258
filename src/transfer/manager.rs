//! The downloads one shell runs into `downloads/`: in the background, each waiting for one of
//! its user's download slots ([`Slots`]) and then copying, with its place in the line or its
//! progress. It knows nothing of the session that shows them: the session starts transfers,
//! awaits [`Transfers::next`], applies each event and shows what comes back; `/transfers`
//! lists them and `/cancel N` stops one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Download, FetchError, Slots, Sources};
use crate::library::human_size;

/// Most downloads one shell holds at once, running and waiting together.
pub const MAX_TRANSFERS: usize = 16;
/// Least time between two progress updates of one transfer.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// Transfer events queued for the session before progress updates are dropped.
pub const TRANSFER_EVENTS: usize = 64;

/// What a transfer reports; give it to [`Transfers::apply`].
#[derive(Debug)]
pub struct TransferEvent(Event);

#[derive(Debug)]
enum Event {
    /// Waiting for a slot, with this many of the user's downloads ahead.
    Queued {
        id: u64,
        ahead: usize,
    },
    /// A slot was free: copying.
    Started {
        id: u64,
    },
    Progress {
        id: u64,
        bytes: u64,
    },
    Done {
        id: u64,
        result: Result<String, FetchError>,
    },
}

/// A transfer that ended.
#[derive(Debug)]
pub struct Finished {
    pub download: Download,
    /// The name saved under in `downloads/`, or why nothing was saved.
    pub result: Result<String, FetchError>,
}

impl Finished {
    /// What to tell the user: `Ok("saved NAME (SIZE) in downloads/SAVED")`, or
    /// `Err("get NAME failed: WHY")`.
    pub fn report(&self) -> Result<String, String> {
        let d = &self.download;
        match &self.result {
            Ok(saved) => Ok(format!(
                "saved {} ({}) in downloads/{saved}",
                d.name,
                human_size(d.size)
            )),
            Err(e @ (FetchError::Broken { at, .. } | FetchError::Corrupt { at, .. }))
                if *at > 0 =>
            {
                Err(format!(
                    "get {} failed: {e}; the verified bytes are kept in downloads/{}: /get {} \
                 again resumes from there",
                    d.name,
                    super::part_name(d),
                    d.hash
                ))
            }
            Err(e) => Err(format!("get {} failed: {e}", d.name)),
        }
    }
}

/// [`MAX_TRANSFERS`] are running or waiting already.
#[derive(Debug, thiserror::Error)]
#[error("{MAX_TRANSFERS} downloads are running or waiting in this shell; /cancel one or wait")]
pub struct Busy;

/// `/cancel N` named no transfer of this shell.
#[derive(Debug, thiserror::Error)]
#[error("no transfer {0} here; /transfers lists them")]
pub struct NoSuchTransfer(pub u64);

/// Where a transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a slot behind `ahead` of the user's downloads.
    Queued { ahead: usize },
    /// Copying since `started`; `bytes` as last reported.
    Running { bytes: u64, started: Instant },
}

/// A transfer of this shell.
struct Entry {
    download: Download,
    state: State,
    task: tokio::task::AbortHandle,
}

/// The downloads of one user's shell, and what they report.
pub struct Transfers {
    /// Where the bytes come from.
    sources: Sources,
    /// The user's download slots, shared with their other sessions.
    slots: Slots,
    /// Whose `downloads/` they go to.
    user_id: i64,
    next_id: u64,
    entries: BTreeMap<u64, Entry>,
    events_tx: tokio::sync::mpsc::Sender<TransferEvent>,
    events_rx: tokio::sync::mpsc::Receiver<TransferEvent>,
}

impl Transfers {
    pub fn new(sources: Sources, slots: Slots, user_id: i64) -> Transfers {
        let (events_tx, events_rx) = tokio::sync::mpsc::channel(TRANSFER_EVENTS);
        Transfers {
            sources,
            slots,
            user_id,
            next_id: 0,
            entries: BTreeMap::new(),
            events_tx,
            events_rx,
        }
    }

    /// Starts `download` in the background: it waits for a slot, then copies into the
    /// user's `downloads/`. Returns its number (for `/cancel`).
    pub fn start(&mut self, download: Download) -> Result<u64, Busy> {
        if self.entries.len() >= MAX_TRANSFERS {
            return Err(Busy);
        }
        self.next_id += 1;
        let id = self.next_id;
        let (sources, slots, user_id, events) = (
            self.sources.clone(),
            self.slots.clone(),
            self.user_id,
            self.events_tx.clone(),
        );
        let task_download = download.clone();
        let task = tokio::spawn(async move {
            let queued = events.clone();
            let slot = slots
                .acquire(user_id, |ahead| {
                    let _ = queued.try_send(TransferEvent(Event::Queued { id, ahead }));
                })
                .await;
            let result = match slot {
                Err(full) => Err(FetchError::from(full)),
                Ok(_slot) => {
                    let _ = events.send(TransferEvent(Event::Started { id })).await;
                    let progress = events.clone();
                    let mut last = Instant::now();
                    sources
                        .fetch_to_downloads(user_id, &task_download, move |bytes| {
                            if last.elapsed() >= PROGRESS_INTERVAL {
                                last = Instant::now();
                                let event = TransferEvent(Event::Progress { id, bytes });
                                let _ = progress.try_send(event);
                            }
                        })
                        .await
                }
            };
            let _ = events.send(TransferEvent(Event::Done { id, result })).await;
        });
        self.entries.insert(
            id,
            Entry {
                download,
                state: State::Queued { ahead: 0 },
                task: task.abort_handle(),
            },
        );
        Ok(id)
    }

    /// The next event of a transfer.
    pub async fn next(&mut self) -> Option<TransferEvent> {
        self.events_rx.recv().await
    }

    /// Applies an event; a finished transfer comes back.
    pub fn apply(&mut self, event: TransferEvent) -> Option<Finished> {
        match event.0 {
            Event::Queued { id, ahead } => {
                if let Some(t) = self.entries.get_mut(&id) {
                    if matches!(t.state, State::Queued { .. }) {
                        t.state = State::Queued { ahead };
                    }
                }
                None
            }
            Event::Started { id } => {
                if let Some(t) = self.entries.get_mut(&id) {
                    t.state = State::Running {
                        bytes: 0,
                        started: Instant::now(),
                    };
                }
                None
            }
            Event::Progress { id, bytes } => {
                if let Some(Entry {
                    state: State::Running { bytes: b, .. },
                    ..
                }) = self.entries.get_mut(&id)
                {
                    *b = bytes;
                }
                None
            }
            Event::Done { id, result } => {
                let t = self.entries.remove(&id)?;
                Some(Finished {
                    download: t.download,
                    result,
                })
            }
        }
    }

    /// Stops transfer `id`, running or waiting; returns what it was downloading.
    pub fn cancel(&mut self, id: u64) -> Result<Download, NoSuchTransfer> {
        let entry = self.entries.remove(&id).ok_or(NoSuchTransfer(id))?;
        entry.task.abort();
        Ok(entry.download)
    }

    /// One line per transfer, numbered for `/cancel N`, as of `now`:
    /// `  2  get NAME 42% 3.1 MiB of 7.4 MiB 1.2 MiB/s ETA 0:04` or
    /// `  3  get NAME (7.4 MiB) waiting: 1 of your downloads ahead`.
    pub fn list(&self, now: Instant) -> Vec<String> {
        self.entries
            .iter()
            .map(|(id, t)| format!("  {id}  {}", line(t, now)))
            .collect()
    }

    /// The status line's part: each transfer as in [`Transfers::list`], joined with `, `;
    /// empty when none runs or waits.
    pub fn activity(&self, now: Instant) -> String {
        self.entries
            .values()
            .map(|t| line(t, now))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Transfers of this shell, running and waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Drop for Transfers {
    /// A shell that closes stops its downloads (what was verified stays, to be resumed).
    fn drop(&mut self) {
        for entry in self.entries.values() {
            entry.task.abort();
        }
    }
}

/// `get NAME 42% 3.1 MiB of 7.4 MiB 1.2 MiB/s ETA 0:04`, or `get NAME (SIZE) waiting: N
/// of your downloads ahead`.
fn line(t: &Entry, now: Instant) -> String {
    let d = &t.download;
    match t.state {
        State::Queued { ahead } => format!(
            "get {} ({}) waiting for a slot: {ahead} of your downloads ahead",
            d.name,
            human_size(d.size)
        ),
        State::Running { bytes, started } => {
            let secs = now
                .saturating_duration_since(started)
                .as_secs_f64()
                .max(0.001);
            let rate = bytes as f64 / secs;
            let percent = (bytes * 100).checked_div(d.size).unwrap_or(100);
            let eta = if rate > 0.0 {
                let left = (d.size.saturating_sub(bytes) as f64 / rate) as u64;
                format!("{}:{:02}", left / 60, left % 60)
            } else {
                "?".to_owned()
            };
            format!(
                "get {} {percent}% {} of {} {}/s ETA {eta}",
                d.name,
                human_size(bytes),
                human_size(d.size),
                human_size(rate as u64)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::tests::{library, run, sources};
    use crate::transfer::Source;

    fn song(size: u64) -> Download {
        Download {
            source: Source::Local {
                owner_id: 1,
                path: "a/song.flac".into(),
            },
            name: "song.flac".into(),
            size,
            hash: "00".into(),
        }
    }

    #[test]
    fn the_progress_line_shows_bytes_rate_and_eta() {
        let dir = tempfile::tempdir().unwrap();
        let (library, _thread) = library(dir.path(), 1 << 30);
        let mut transfers = Transfers::new(sources(library), Slots::new(1), 2);
        let now = Instant::now();
        assert_eq!(transfers.activity(now), "");
        run(async {
            let task = tokio::spawn(async {}).abort_handle();
            transfers.entries.insert(
                1,
                Entry {
                    download: song(10 << 20),
                    state: State::Queued { ahead: 0 },
                    task,
                },
            );
        });
        assert!(transfers
            .apply(TransferEvent(Event::Queued { id: 1, ahead: 2 }))
            .is_none());
        assert_eq!(
            transfers.list(now),
            ["  1  get song.flac (10.0 MiB) waiting for a slot: 2 of your downloads ahead"]
        );
        transfers.apply(TransferEvent(Event::Started { id: 1 }));
        let started = match transfers.entries[&1].state {
            State::Running { started, .. } => started,
            other => panic!("{other:?}"),
        };
        let progress = TransferEvent(Event::Progress {
            id: 1,
            bytes: 4 << 20,
        });
        assert!(transfers.apply(progress).is_none());
        let line = transfers.activity(started + Duration::from_secs(2));
        assert_eq!(
            line,
            "get song.flac 40% 4.0 MiB of 10.0 MiB 2.0 MiB/s ETA 0:03"
        );
        let done = transfers.apply(TransferEvent(Event::Done {
            id: 1,
            result: Ok("song.flac".into()),
        }));
        let report = done.map(|f| f.report());
        assert_eq!(
            report,
            Some(Ok(
                "saved song.flac (10.0 MiB) in downloads/song.flac".into()
            ))
        );
        assert_eq!(transfers.activity(now), "");
    }

    #[test]
    fn a_shell_holds_at_most_max_transfers_and_cancel_frees_a_place() {
        let dir = tempfile::tempdir().unwrap();
        let (library, _thread) = library(dir.path(), 1 << 30);
        let slots = Slots::new(1);
        let mut transfers = Transfers::new(sources(library), slots.clone(), 2);
        run(async {
            // The user's one slot is taken elsewhere (another session): these all wait.
            let _elsewhere = slots.acquire(2, |_| {}).await.unwrap();
            let ids: Vec<u64> = (0..MAX_TRANSFERS)
                .map(|_| transfers.start(song(1)).unwrap())
                .collect();
            let refused = transfers.start(song(1)).unwrap_err();
            assert!(refused.to_string().contains("16 downloads"), "{refused}");
            tokio::task::yield_now().await;
            assert_eq!(slots.load(2), (1, MAX_TRANSFERS));
            // Cancelling a waiting one: it leaves the line, and the shell has room again.
            let cancelled = transfers.cancel(ids[0]).unwrap();
            assert_eq!(cancelled.name, "song.flac");
            tokio::task::yield_now().await;
            assert_eq!(slots.load(2), (1, MAX_TRANSFERS - 1));
            assert!(transfers.cancel(ids[0]).is_err());
            transfers.start(song(1)).unwrap();
            assert_eq!(transfers.len(), MAX_TRANSFERS);
            // Those waiting were told their place: the last one has all the others ahead.
            for _ in 0..MAX_TRANSFERS * 2 {
                let Ok(event) = transfers.events_rx.try_recv() else {
                    break;
                };
                transfers.apply(event);
            }
            let listed = transfers.list(Instant::now());
            assert!(
                listed
                    .iter()
                    .any(|l| l.contains("waiting for a slot: 14 of your downloads ahead")),
                "{listed:?}"
            );
            // A closed shell stops what it ran.
            drop(transfers);
            tokio::task::yield_now().await;
            assert_eq!(slots.load(2), (1, 0));
        });
    }
}
