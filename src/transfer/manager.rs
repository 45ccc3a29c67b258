//! The downloads one shell runs into `downloads/`: at most a few at once, in the background,
//! with their progress. It knows nothing of the session that shows them: the session starts
//! transfers, awaits [`Transfers::next`], applies each event and shows what comes back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Download, FetchError, Sources};
use crate::library::human_size;

/// Most downloads one shell runs at once.
pub const MAX_TRANSFERS: usize = 4;
/// Least time between two progress updates of one transfer.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// Transfer events queued for the session before progress updates are dropped.
pub const TRANSFER_EVENTS: usize = 64;

/// What a running transfer reports; give it to [`Transfers::apply`].
#[derive(Debug)]
pub struct TransferEvent(Event);

#[derive(Debug)]
enum Event {
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

/// [`MAX_TRANSFERS`] are running already.
#[derive(Debug, thiserror::Error)]
#[error("{MAX_TRANSFERS} downloads are running; wait for one to finish")]
pub struct Busy;

/// A transfer running.
struct Running {
    download: Download,
    /// Bytes copied, as last reported.
    bytes: u64,
    started: Instant,
}

/// The downloads running for one user's shell, and the progress they report.
pub struct Transfers {
    /// Where the bytes come from.
    sources: Sources,
    /// Whose `downloads/` they go to.
    user_id: i64,
    next_id: u64,
    running: BTreeMap<u64, Running>,
    events_tx: tokio::sync::mpsc::Sender<TransferEvent>,
    events_rx: tokio::sync::mpsc::Receiver<TransferEvent>,
}

impl Transfers {
    pub fn new(sources: Sources, user_id: i64) -> Transfers {
        let (events_tx, events_rx) = tokio::sync::mpsc::channel(TRANSFER_EVENTS);
        Transfers {
            sources,
            user_id,
            next_id: 0,
            running: BTreeMap::new(),
            events_tx,
            events_rx,
        }
    }

    /// Starts copying `download` into the user's `downloads/` in the background.
    pub fn start(&mut self, download: Download) -> Result<(), Busy> {
        if self.running.len() >= MAX_TRANSFERS {
            return Err(Busy);
        }
        self.next_id += 1;
        let id = self.next_id;
        let (sources, user_id, events) =
            (self.sources.clone(), self.user_id, self.events_tx.clone());
        let progress_events = events.clone();
        let task_download = download.clone();
        let mut last = Instant::now();
        tokio::spawn(async move {
            let result = sources
                .fetch_to_downloads(user_id, &task_download, move |bytes| {
                    if last.elapsed() >= PROGRESS_INTERVAL {
                        last = Instant::now();
                        let event = TransferEvent(Event::Progress { id, bytes });
                        let _ = progress_events.try_send(event);
                    }
                })
                .await;
            let _ = events.send(TransferEvent(Event::Done { id, result })).await;
        });
        self.running.insert(
            id,
            Running {
                download,
                bytes: 0,
                started: Instant::now(),
            },
        );
        Ok(())
    }

    /// The next event of a running transfer.
    pub async fn next(&mut self) -> Option<TransferEvent> {
        self.events_rx.recv().await
    }

    /// Applies an event; a finished transfer comes back.
    pub fn apply(&mut self, event: TransferEvent) -> Option<Finished> {
        match event.0 {
            Event::Progress { id, bytes } => {
                if let Some(t) = self.running.get_mut(&id) {
                    t.bytes = bytes;
                }
                None
            }
            Event::Done { id, result } => {
                let t = self.running.remove(&id)?;
                Some(Finished {
                    download: t.download,
                    result,
                })
            }
        }
    }

    /// `get NAME 42% 3.1 MiB of 7.4 MiB 1.2 MiB/s ETA 0:04` for each running transfer, as
    /// of `now`, joined with `, `; empty when none runs.
    pub fn activity(&self, now: Instant) -> String {
        self.running
            .values()
            .map(|t| {
                let secs = now
                    .saturating_duration_since(t.started)
                    .as_secs_f64()
                    .max(0.001);
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
        let mut transfers = Transfers::new(sources(library), 2);
        let now = Instant::now();
        assert_eq!(transfers.activity(now), "");
        transfers.running.insert(
            1,
            Running {
                download: song(10 << 20),
                bytes: 0,
                started: now,
            },
        );
        let progress = TransferEvent(Event::Progress {
            id: 1,
            bytes: 4 << 20,
        });
        assert!(transfers.apply(progress).is_none());
        let line = transfers.activity(now + Duration::from_secs(2));
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
    fn a_download_past_the_limit_is_refused_until_one_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let (library, _thread) = library(dir.path(), 1 << 30);
        let mut transfers = Transfers::new(sources(library), 2);
        run(async {
            for _ in 0..MAX_TRANSFERS {
                transfers.start(song(1)).unwrap();
            }
            let refused = transfers.start(song(1)).unwrap_err();
            assert_eq!(
                refused.to_string(),
                "4 downloads are running; wait for one to finish"
            );
            // None of them is catalogued: each ends, refused, and makes room for another.
            let mut finished = None;
            while finished.is_none() {
                let event = transfers.next().await.unwrap();
                finished = transfers.apply(event);
            }
            let report = finished.unwrap().report().unwrap_err();
            assert!(report.contains("is no longer shared"), "{report}");
            transfers.start(song(1)).unwrap();
        });
        assert_eq!(transfers.running.len(), MAX_TRANSFERS);
    }
}
