//! Search over a catalog of 1,000,000 synthetic files: the time to index them, and p50/p99
//! latency of typical queries. Run: `cargo bench --bench search` (ROWS=N to change the size).
//! By default half the files are remote: shared on 50 other instances (PEERS=N) by 10 users
//! each, stored as federation stores them; REMOTE_PERCENT=0 measures a local-only catalog.
//!
//! Goal (issues 3 and 7): p99 under 20 ms, with remote files in the catalog.

use std::time::{Duration, Instant};

use rosewire::store::{self, files, remote, users};
use rosewire_shell::query::parse_query;

/// Words file names are made of; a few are common, most are rare (Zipf-like draw below).
const VOCABULARY: usize = 20_000;
/// Each query runs this many times for the percentiles.
const RUNS_PER_QUERY: usize = 50;

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Skewed towards small numbers: word 0 is far more common than word 19999.
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        ((n as f64).powf(u) as usize).saturating_sub(1).min(n - 1)
    }
}

fn word(i: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "ro", "mi", "lu", "ten", "sa", "vo", "ri", "del", "na", "por", "xi", "be", "mo",
        "jaz", "qu",
    ];
    let mut w = String::new();
    let mut n = i + 16;
    while n > 0 {
        w.push_str(SYLLABLES[n % 16]);
        n /= 16;
    }
    w
}

fn main() {
    let env = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rows = env("ROWS", 1_000_000);
    let remote_percent = env("REMOTE_PERCENT", 50).min(100);
    let peers = env("PEERS", 50).max(1);
    let remote_rows = rows * remote_percent / 100;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = rusqlite::Connection::open(dir.path().join("bench.db")).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    store::migrate(&mut conn).expect("migrate");
    let owners: Vec<i64> = (0..100)
        .map(|i| {
            match users::authenticate(
                &mut conn,
                &format!("user{i}"),
                &format!("SHA256:{i}"),
                "k",
                0,
            )
            .unwrap()
            {
                users::AuthOutcome::Claimed { user_id, .. } => user_id,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    let words: Vec<String> = (0..VOCABULARY).map(word).collect();
    let exts = ["flac", "mp3", "ogg", "mkv", "pdf", "epub", "jpg", "zip"];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // (owner: local user id, or -(peer * 10 + user) - 1 for a remote one), path, size, hash.
    let mut catalog: Vec<(i64, String, u64, String)> = Vec::with_capacity(rows);
    for i in 0..rows {
        let artist = &words[rng.zipf(VOCABULARY)];
        let album = format!(
            "{} {}",
            words[rng.zipf(VOCABULARY)],
            words[rng.zipf(VOCABULARY)]
        );
        let title = format!(
            "{} {} {}",
            words[rng.zipf(VOCABULARY)],
            words[rng.zipf(VOCABULARY)],
            words[rng.zipf(VOCABULARY)]
        );
        let ext = exts[(rng.next() % exts.len() as u64) as usize];
        let path = format!("{artist}/{album}/{:02} - {title}.{ext}", i % 20 + 1);
        let size = rng.next() % (200 << 20);
        let hash = blake3::hash(&(i as u64).to_le_bytes()).to_hex().to_string();
        // Remote files are drawn like local ones; peer and user by position.
        let owner = if (i % 100) < remote_percent {
            -((rng.next() % (peers as u64 * 10)) as i64) - 1
        } else {
            owners[i % owners.len()]
        };
        catalog.push((owner, path, size, hash));
    }

    let started = Instant::now();
    for owner in &owners {
        let mine = catalog
            .iter()
            .filter(|(o, ..)| o == owner)
            .map(|(_, p, s, h)| (p.as_str(), *s, h.as_str(), true));
        files::insert_many(&mut conn, *owner, mine, 0).expect("insert");
    }
    let index_time = started.elapsed();
    let started = Instant::now();
    for peer in 0..peers {
        let theirs: Vec<remote::NewRemoteFile> = catalog
            .iter()
            .filter(|(o, ..)| *o < 0 && ((-o - 1) as usize) / 10 == peer)
            .map(|(o, p, s, h)| remote::NewRemoteFile {
                nick: format!("user{}", (-o - 1) % 10),
                hash: h.clone(),
                path: p.clone(),
                size: *s,
            })
            .collect();
        let applied =
            remote::apply(&mut conn, &peer_domain(peer), &theirs, u64::MAX, 0).expect("apply");
        assert_eq!(applied.added + applied.replaced, theirs.len());
    }
    let remote_time = started.elapsed();

    let common = &words[0];
    let mid = &words[50];
    let rare = &words[5000];
    let queries = [
        common.to_string(),
        mid.to_string(),
        rare.to_string(),
        format!("{common} {mid}"),
        format!("\"{mid} {common}\""),
        format!("{mid} ext:flac"),
        format!("{common} -{mid}"),
        format!("{mid} size:>100M"),
        format!("{rare} user:@user7@bench.test"),
        "ext:epub size:<1M".to_owned(),
        format!("{}*", &mid[..3]),
        // Across the network: one peer, one remote user, this instance only.
        format!("{mid} instance:{}", peer_domain(7)),
        format!("{rare} user:@user3@{}", peer_domain(7)),
        format!("{common} instance:bench.test"),
        format!("ext:epub instance:{}", peer_domain(7)),
    ];
    println!("| query | results | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    let mut all = Vec::new();
    for q in &queries {
        let parsed = parse_query(q).expect("query parses");
        let mut times = Vec::with_capacity(RUNS_PER_QUERY);
        let mut results = 0;
        for _ in 0..RUNS_PER_QUERY {
            let t = Instant::now();
            results = files::search(&conn, &parsed, "bench.test", 100, 0)
                .expect("search")
                .len();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "| `{q}` | {results} | {:.2} | {:.2} |",
            ms(pct(&times, 50)),
            ms(pct(&times, 99))
        );
        all.extend(times);
    }
    all.sort();
    println!();
    println!(
        "rows: {rows}, of which {remote_rows} remote from {peers} peers; \
         index time: local {:.1} s ({:.0} rows/s), remote {:.1} s ({:.0} rows/s)",
        index_time.as_secs_f64(),
        (rows - remote_rows) as f64 / index_time.as_secs_f64(),
        remote_time.as_secs_f64(),
        remote_rows as f64 / remote_time.as_secs_f64().max(1e-9)
    );
    println!(
        "all queries: p50 {:.2} ms, p99 {:.2} ms (goal: p99 < 20 ms)",
        ms(pct(&all, 50)),
        ms(pct(&all, 99))
    );
}

fn peer_domain(peer: usize) -> String {
    format!("peer{peer}.example")
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
