//! The operator's configuration: TOML with embedded defaults, overridden by command-line
//! flags, validated once after loading.
//!
//! Unknown keys are refused with their path (`serde(deny_unknown_fields)`), so a typo in
//! `rosewire.toml` is an error at start-up, not a silently ignored setting.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

/// The commented default configuration, written by `rosewire init`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../assets/rosewire.toml");

/// Longest domain name we accept (RFC 1035 limit on a full name).
const MAX_DOMAIN_LEN: usize = 253;
/// Highest `ssh.max_sessions` accepted: each session may hold an SFTP session's handles.
const MAX_SESSIONS_LIMIT: usize = 256;
/// Most chat lines replayed to a user who joins; more would only scroll past.
pub const MAX_REPLAY_LINES: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The instance's public name: the `domain` in `@nick@domain`.
    pub domain: String,
    /// Where the host key, the database and the users' files live.
    pub data_dir: PathBuf,
    /// Development mode: relaxed federation rules and short timers for local networks and tests.
    pub dev: bool,
    pub ssh: SshConfig,
    pub http: HttpConfig,
    pub chat: ChatConfig,
    pub library: LibraryConfig,
    pub federation: FederationConfig,
    pub messages: MessagesConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshConfig {
    /// Address the SSH server listens on.
    pub listen: SocketAddr,
    /// Most authenticated SSH connections open at once. Unauthenticated connections never
    /// take these places (see `max_startups`); a login past the limit is refused.
    pub max_connections: usize,
    /// New connections one address may open per minute (a token bucket of this size).
    pub connections_per_minute_per_address: u32,
    /// Seconds a connection has to log in, banner and key exchange included (OpenSSH's
    /// `LoginGraceTime`); then it is closed, whatever keepalives it answers.
    pub login_grace_secs: u64,
    /// Unauthenticated connections one address may hold at once; more are closed at once.
    pub max_unauthenticated_per_address: usize,
    /// Unauthenticated connections in total, as OpenSSH's `MaxStartups` "start:rate:full".
    pub max_startups: MaxStartups,
    /// A connection with no traffic at all (not even keepalive replies) for this long is closed.
    pub inactivity_timeout_secs: u64,
    /// Seconds between keepalive probes to a silent client; 0 turns them off.
    pub keepalive_interval_secs: u64,
    /// Session channels (shell, exec, sftp) one connection may have open at once, as
    /// OpenSSH's `MaxSessions`.
    pub max_sessions: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address the HTTP (federation) server listens on.
    pub listen: SocketAddr,
    /// Most HTTP connections open at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// HTTP connections one address may hold at once; more are closed at once.
    pub max_connections_per_address: usize,
    /// Largest request body accepted on any route, in bytes; a larger one is answered 413
    /// before it is read. Federation messages are small: this bounds what one request costs.
    pub max_body_bytes: u64,
    /// PEM file with the TLS certificate chain (leaf first). With `tls_key`, the HTTP
    /// endpoint speaks HTTPS itself and rereads both files on SIGHUP; without either, it
    /// speaks plain HTTP for a TLS-terminating reverse proxy.
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
}

/// OpenSSH's `MaxStartups`: past `start` unauthenticated connections, a new one is dropped
/// with probability `rate`%, rising linearly to 100% at `full`. Written "start:rate:full",
/// or one number `n` for "n:100:n".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxStartups {
    pub start: usize,
    pub rate: u32,
    pub full: usize,
}

impl MaxStartups {
    /// The chance, in percent, that a new connection is dropped while `unauthenticated`
    /// others are open (OpenSSH's `should_drop_connection`).
    pub fn drop_percent(&self, unauthenticated: usize) -> u32 {
        if unauthenticated < self.start {
            0
        } else if unauthenticated >= self.full || self.rate >= 100 {
            100
        } else {
            let past = (unauthenticated - self.start) as u64;
            let span = (self.full - self.start) as u64;
            let rise = u64::from(100 - self.rate) * past / span;
            self.rate + u32::try_from(rise).unwrap_or(100)
        }
    }
}

impl Default for MaxStartups {
    fn default() -> Self {
        MaxStartups {
            start: 10,
            rate: 30,
            full: 100,
        }
    }
}

impl fmt::Display for MaxStartups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.rate, self.full)
    }
}

impl FromStr for MaxStartups {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("ssh.max_startups = {text:?} {why}; write \"start:rate:full\" such as \"10:30:100\"")
        };
        let numbers: Vec<&str> = text.split(':').collect();
        let parse = |s: &str| s.trim().parse::<usize>().map_err(|_| bad("is not numbers"));
        let startups = match numbers.as_slice() {
            [n] => {
                let n = parse(n)?;
                MaxStartups {
                    start: n,
                    rate: 100,
                    full: n,
                }
            }
            [start, rate, full] => MaxStartups {
                start: parse(start)?,
                rate: u32::try_from(parse(rate)?).map_err(|_| bad("has a rate over 100"))?,
                full: parse(full)?,
            },
            _ => return Err(bad("is not three numbers")),
        };
        if startups.start == 0 {
            return Err(bad("starts at 0, which refuses every connection"));
        }
        if startups.rate == 0 || startups.rate > 100 {
            return Err(bad("needs a rate between 1 and 100 (percent)"));
        }
        if startups.start > startups.full {
            return Err(bad("has start above full"));
        }
        Ok(startups)
    }
}

impl<'de> Deserialize<'de> for MaxStartups {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// Chat lines shown to a user when the interactive shell opens.
    pub replay_lines: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LibraryConfig {
    /// Bytes each user may keep in `library/` and `downloads/` together, uploads and `/get`s in
    /// progress included.
    pub quota_bytes: u64,
    /// Largest single file a user may upload or download, in bytes.
    pub max_file_bytes: u64,
    /// Files and folders each user may have in `library/` and `downloads/` together: bounds
    /// the work of listing and walking a user's tree. Past it, new folders, new files and
    /// `/get`s are refused (replacing a file is still allowed).
    pub max_entries: u64,
    /// Files a user may have open for writing at once, across all their SFTP sessions: each
    /// may hold a copy of the file it changes in `.partial/`.
    pub max_uploads_per_user: usize,
    /// SFTP handles (open files and folders) a user may hold across all their sessions.
    pub max_open_files_per_user: usize,
    /// SFTP handles open on the whole instance: each is a file descriptor, so this keeps
    /// room for connections under the process's open file limit.
    pub max_open_files: usize,
    /// Downloads (`/get`, exec `get`) one user may run at once across all their sessions;
    /// more wait their turn in order (at most `transfer::MAX_WAITING_PER_USER`).
    pub max_downloads_per_user: usize,
}

/// Most `library.max_entries` may be: keeps the once-per-user count walk short.
pub const MAX_ENTRIES_LIMIT: u64 = 1_000_000;
/// Most `library.max_downloads_per_user` may be.
pub const MAX_DOWNLOADS_LIMIT: usize = 64;
/// Most `library.max_uploads_per_user` may be.
pub const MAX_UPLOADS_LIMIT: usize = 256;
/// Most `http.max_body_bytes` may be (16 MiB): every request body is held in memory whole.
pub const MAX_BODY_LIMIT: u64 = 16 << 20;

impl Default for LibraryConfig {
    fn default() -> Self {
        LibraryConfig {
            quota_bytes: 10 << 30,
            max_file_bytes: 4 << 30,
            max_entries: 10_000,
            max_uploads_per_user: 8,
            max_open_files_per_user: 256,
            max_open_files: 16_384,
            max_downloads_per_user: 3,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// Peers to contact first (base URLs such as `https://rose.example`).
    pub bootstrap: Vec<String>,
    /// Development and tests only (needs `dev = true`): a PEM CA certificate trusted for
    /// peers' `https://` instead of the public roots, such as a test CA. Setting it makes the
    /// dev network speak TLS: this instance (its base URL and key id) and every peer are
    /// reached over `https://`, not the plain `http://` of other dev networks (see
    /// [`Config::scheme`]); serve HTTPS with `http.tls_cert`/`tls_key` from the same CA.
    pub dev_trusted_root: Option<PathBuf>,
    /// Most shared files kept from one peer (its users' files together); new files past it
    /// are left out, with a log line. 0 keeps none: search covers local files only.
    pub max_remote_files_per_peer: u64,
    /// Instances never talked to (no sending, no receiving, no gossip about them): domains
    /// (`rose.example`) or every subdomain of one (`*.rose.example`).
    pub block: Vec<String>,
    /// When set, the only instances talked to (same patterns as `block`, which wins).
    pub allow_only: Option<Vec<String>>,
    /// Seconds between two gossip rounds (asking one random known peer for its peers).
    /// Dev mode uses at most [`DEV_GOSSIP_INTERVAL`].
    pub gossip_interval_secs: u64,
    /// Activities one peer may deliver to our inbox per second, after a burst of twice as
    /// many; past it the inbox answers 429 and the peer retries later. Bounds what one peer
    /// can make us verify and write.
    pub inbox_per_second: u32,
    /// Benchmarks only (needs `dev = true`): bytes relayed from other instances are handed
    /// on without checking them against the file id, to measure what checking costs.
    pub dev_skip_verify: bool,
    /// Bytes a second this instance sends to other instances' downloads, all streams
    /// together (after a one-second burst); 0: no limit.
    pub relay_bytes_per_second: u64,
    /// Name this instance's users to the instances their downloads come from
    /// (`@nick@domain`, told to the file's owner). Off by default: the owner's home learns
    /// only this instance's address.
    pub reveal_downloader: bool,
    /// Files streamed at a time to one other instance (its users' downloads of files shared
    /// here); past it that instance is answered 429 and may try again shortly.
    pub relay_uploads_per_peer: usize,
    /// Files streamed at a time to other instances, all together; past it 503.
    pub relay_uploads: usize,
}

/// Private messages: how large, how many, how much is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagesConfig {
    /// Longest plain message, in bytes.
    pub max_text_bytes: usize,
    /// Longest sealed message (its age armor), in bytes.
    pub max_sealed_bytes: usize,
    /// Messages one sender may send per minute (a burst of as many, then one every
    /// 60/`per_minute` s); applied to local senders here and to remote senders on arrival.
    pub per_minute: u32,
    /// Messages kept per user, sent and received together; past it the oldest go.
    pub max_stored_per_user: u64,
}

impl Default for MessagesConfig {
    fn default() -> Self {
        MessagesConfig {
            max_text_bytes: 4096,
            max_sealed_bytes: 16 * 1024,
            per_minute: 30,
            max_stored_per_user: 10_000,
        }
    }
}

impl MessagesConfig {
    /// The per-sender token bucket: a burst of `per_minute`, then one every 60/`per_minute` s.
    pub fn rate(&self) -> (u32, std::time::Duration) {
        let per_minute = self.per_minute.max(1);
        (per_minute, std::time::Duration::from_secs(60) / per_minute)
    }
}

/// Highest `messages.per_minute` accepted.
pub const MAX_MESSAGES_PER_MINUTE: u32 = 6_000;
/// Highest `messages.max_stored_per_user` accepted.
pub const MAX_STORED_MESSAGES_LIMIT: u64 = 1_000_000;

/// Default of `federation.max_remote_files_per_peer`: a large music collection or two per
/// peer; at 50 peers that is 10 million rows, still answered within the search goal.
pub const DEFAULT_MAX_REMOTE_FILES_PER_PEER: u64 = 200_000;
/// Highest `federation.max_remote_files_per_peer` accepted.
const MAX_REMOTE_FILES_PER_PEER_LIMIT: u64 = 10_000_000;

/// Default of `federation.inbox_per_second`: far above what a busy instance's users say,
/// well under what the inbox can verify and apply (benches/README.md, `inbox`).
pub const DEFAULT_INBOX_PER_SECOND: u32 = 1_000;
/// Highest `federation.inbox_per_second` accepted.
pub const MAX_INBOX_PER_SECOND: u32 = 1_000_000;

/// Default of `federation.relay_uploads_per_peer`: a few downloads at once per instance, so
/// one busy instance cannot take every upload slot.
pub const DEFAULT_RELAY_UPLOADS_PER_PEER: usize = 4;
/// Default of `federation.relay_uploads`: each stream holds a blocking thread and a few
/// buffers of 64 KiB.
pub const DEFAULT_RELAY_UPLOADS: usize = 32;
/// Highest `federation.relay_uploads` (and so `relay_uploads_per_peer`) accepted: tokio's
/// blocking pool has 512 threads, shared with everything else.
pub const MAX_RELAY_UPLOADS: usize = 256;

/// Longest `federation.gossip_interval_secs`: one day.
pub const MAX_GOSSIP_INTERVAL_SECS: u64 = 86_400;
/// The gossip interval in dev mode (tests and local networks want to converge in seconds).
pub const DEV_GOSSIP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            bootstrap: Vec::new(),
            dev_trusted_root: None,
            max_remote_files_per_peer: DEFAULT_MAX_REMOTE_FILES_PER_PEER,
            block: Vec::new(),
            allow_only: None,
            gossip_interval_secs: 60,
            inbox_per_second: DEFAULT_INBOX_PER_SECOND,
            dev_skip_verify: false,
            relay_bytes_per_second: 0,
            reveal_downloader: false,
            relay_uploads_per_peer: DEFAULT_RELAY_UPLOADS_PER_PEER,
            relay_uploads: DEFAULT_RELAY_UPLOADS,
        }
    }
}

impl FederationConfig {
    /// The time between two gossip rounds: `gossip_interval_secs`, at most
    /// [`DEV_GOSSIP_INTERVAL`] in dev mode.
    pub fn effective_gossip_interval(&self, dev: bool) -> std::time::Duration {
        let configured = std::time::Duration::from_secs(self.gossip_interval_secs);
        if dev {
            configured.min(DEV_GOSSIP_INTERVAL)
        } else {
            configured
        }
    }

    /// The inbox's per-peer token bucket: a burst of twice `inbox_per_second`, then one
    /// activity every 1/`inbox_per_second` s.
    pub fn inbox_rate(&self) -> (u32, std::time::Duration) {
        let per_second = self.inbox_per_second.max(1);
        (
            per_second.saturating_mul(2),
            std::time::Duration::from_secs(1) / per_second,
        )
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domain: default_domain(),
            data_dir: default_data_dir(),
            dev: false,
            ssh: SshConfig::default(),
            http: HttpConfig::default(),
            chat: ChatConfig::default(),
            library: LibraryConfig::default(),
            federation: FederationConfig::default(),
            messages: MessagesConfig::default(),
        }
    }
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 2222)),
            max_connections: 1024,
            connections_per_minute_per_address: 120,
            login_grace_secs: 30,
            max_unauthenticated_per_address: 10,
            max_startups: MaxStartups::default(),
            inactivity_timeout_secs: 3600,
            keepalive_interval_secs: 30,
            max_sessions: 10,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_connections: 512,
            max_connections_per_address: 64,
            max_body_bytes: 256 << 10,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig { replay_lines: 50 }
    }
}

impl Config {
    /// Parses a config file's text; `path` only names the file in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Checks what serde cannot: ranges and the shape of names.
    /// Puts values in the one form the rest of the server compares: the domain lowercase, as
    /// peers compare key ids, actors and peer names.
    pub fn normalize(&mut self) {
        self.domain = self.domain.to_ascii_lowercase();
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if !valid_domain(&self.domain, self.dev) {
            return invalid(format!(
                "domain {:?} is not a host name{}",
                self.domain,
                if self.dev { " (or host:port)" } else { "" }
            ));
        }
        if self.ssh.max_connections == 0 {
            return invalid("ssh.max_connections must be at least 1".into());
        }
        if !(1..=MAX_SESSIONS_LIMIT).contains(&self.ssh.max_sessions) {
            return invalid(format!(
                "ssh.max_sessions = {} must be between 1 and {MAX_SESSIONS_LIMIT}",
                self.ssh.max_sessions
            ));
        }
        if self.ssh.connections_per_minute_per_address == 0 {
            return invalid("ssh.connections_per_minute_per_address must be at least 1".into());
        }
        if self.ssh.login_grace_secs == 0 {
            return invalid("ssh.login_grace_secs must be at least 1".into());
        }
        if self.ssh.max_unauthenticated_per_address == 0 {
            return invalid("ssh.max_unauthenticated_per_address must be at least 1".into());
        }
        if self.http.max_connections == 0 {
            return invalid("http.max_connections must be at least 1".into());
        }
        if self.http.max_connections_per_address == 0 {
            return invalid("http.max_connections_per_address must be at least 1".into());
        }
        if !(1..=MAX_BODY_LIMIT).contains(&self.http.max_body_bytes) {
            return invalid(format!(
                "http.max_body_bytes = {} must be between 1 and {MAX_BODY_LIMIT}",
                self.http.max_body_bytes
            ));
        }
        match (&self.http.tls_cert, &self.http.tls_key) {
            (Some(_), None) => return invalid(
                "http.tls_cert is set but http.tls_key is not; set both, or neither for plain http"
                    .into(),
            ),
            (None, Some(_)) => return invalid(
                "http.tls_key is set but http.tls_cert is not; set both, or neither for plain http"
                    .into(),
            ),
            _ => {}
        }
        if self.ssh.inactivity_timeout_secs == 0 {
            return invalid("ssh.inactivity_timeout_secs must be at least 1".into());
        }
        if self.chat.replay_lines > MAX_REPLAY_LINES {
            return invalid(format!(
                "chat.replay_lines = {} is more than the limit of {MAX_REPLAY_LINES}",
                self.chat.replay_lines
            ));
        }
        if self.library.max_file_bytes == 0
            || self.library.max_file_bytes > self.library.quota_bytes
        {
            return invalid(format!(
                "library.max_file_bytes = {} must be between 1 and library.quota_bytes ({})",
                self.library.max_file_bytes, self.library.quota_bytes
            ));
        }
        if !(1..=MAX_ENTRIES_LIMIT).contains(&self.library.max_entries) {
            return invalid(format!(
                "library.max_entries = {} must be between 1 and {MAX_ENTRIES_LIMIT}",
                self.library.max_entries
            ));
        }
        if !(1..=MAX_UPLOADS_LIMIT).contains(&self.library.max_uploads_per_user) {
            return invalid(format!(
                "library.max_uploads_per_user = {} must be between 1 and {MAX_UPLOADS_LIMIT}",
                self.library.max_uploads_per_user
            ));
        }
        if !(1..=MAX_DOWNLOADS_LIMIT).contains(&self.library.max_downloads_per_user) {
            return invalid(format!(
                "library.max_downloads_per_user = {} must be between 1 and {MAX_DOWNLOADS_LIMIT}",
                self.library.max_downloads_per_user
            ));
        }
        if self.library.max_open_files_per_user == 0
            || self.library.max_open_files_per_user > self.library.max_open_files
        {
            return invalid(format!(
                "library.max_open_files_per_user = {} must be between 1 and library.max_open_files ({})",
                self.library.max_open_files_per_user, self.library.max_open_files
            ));
        }
        if self.federation.max_remote_files_per_peer > MAX_REMOTE_FILES_PER_PEER_LIMIT {
            return invalid(format!(
                "federation.max_remote_files_per_peer = {} is more than the limit of {MAX_REMOTE_FILES_PER_PEER_LIMIT}",
                self.federation.max_remote_files_per_peer
            ));
        }
        for url in &self.federation.bootstrap {
            // The peer is reached over the network's scheme: the URL must say so.
            if let Err(e) = crate::fed::target::domain_from_url(url, self.scheme(), self.dev) {
                return invalid(format!("federation.bootstrap: {e}"));
            }
        }
        if let Some(root) = &self.federation.dev_trusted_root {
            if !self.dev {
                return invalid(format!(
                    "federation.dev_trusted_root = {:?} is for development only; set dev = true or remove it",
                    root.display().to_string()
                ));
            }
            if !root.is_file() {
                return invalid(format!(
                    "federation.dev_trusted_root = {:?} is not a file; give a PEM CA certificate",
                    root.display().to_string()
                ));
            }
        }
        if !(1..=MAX_GOSSIP_INTERVAL_SECS).contains(&self.federation.gossip_interval_secs) {
            return invalid(format!(
                "federation.gossip_interval_secs = {} must be between 1 and {MAX_GOSSIP_INTERVAL_SECS}",
                self.federation.gossip_interval_secs
            ));
        }
        if !(1..=MAX_INBOX_PER_SECOND).contains(&self.federation.inbox_per_second) {
            return invalid(format!(
                "federation.inbox_per_second = {} must be between 1 and {MAX_INBOX_PER_SECOND}",
                self.federation.inbox_per_second
            ));
        }
        let wire = crate::fed::activity::MAX_MESSAGE_BYTES;
        for (key, value) in [
            ("messages.max_text_bytes", self.messages.max_text_bytes),
            ("messages.max_sealed_bytes", self.messages.max_sealed_bytes),
        ] {
            if !(1..=wire).contains(&value) {
                return invalid(format!("{key} = {value} must be between 1 and {wire}"));
            }
        }
        if !(1..=MAX_MESSAGES_PER_MINUTE).contains(&self.messages.per_minute) {
            return invalid(format!(
                "messages.per_minute = {} must be between 1 and {MAX_MESSAGES_PER_MINUTE}",
                self.messages.per_minute
            ));
        }
        if !(1..=MAX_STORED_MESSAGES_LIMIT).contains(&self.messages.max_stored_per_user) {
            return invalid(format!(
                "messages.max_stored_per_user = {} must be between 1 and {MAX_STORED_MESSAGES_LIMIT}",
                self.messages.max_stored_per_user
            ));
        }
        if !(1..=MAX_RELAY_UPLOADS).contains(&self.federation.relay_uploads) {
            return invalid(format!(
                "federation.relay_uploads = {} must be between 1 and {MAX_RELAY_UPLOADS}",
                self.federation.relay_uploads
            ));
        }
        if !(1..=self.federation.relay_uploads).contains(&self.federation.relay_uploads_per_peer) {
            return invalid(format!(
                "federation.relay_uploads_per_peer = {} must be between 1 and federation.relay_uploads ({})",
                self.federation.relay_uploads_per_peer, self.federation.relay_uploads
            ));
        }
        if self.federation.dev_skip_verify && !self.dev {
            return invalid(
                "federation.dev_skip_verify turns off the checking of relayed bytes; it needs dev = true (benchmarks only)"
                    .into(),
            );
        }
        for pattern in &self.federation.block {
            crate::fed::policy::check_pattern("federation.block", pattern, self.dev)
                .map_err(ConfigError::Invalid)?;
        }
        if let Some(allow_only) = &self.federation.allow_only {
            if allow_only.is_empty() {
                return invalid(
                    "federation.allow_only = [] allows no instance at all; remove the key to allow every instance"
                        .into(),
                );
            }
            for pattern in allow_only {
                crate::fed::policy::check_pattern("federation.allow_only", pattern, self.dev)
                    .map_err(ConfigError::Invalid)?;
            }
        }
        Ok(())
    }

    pub fn host_key_path(&self) -> PathBuf {
        self.data_dir.join("host_ed25519_key")
    }

    pub fn instance_key_path(&self) -> PathBuf {
        self.data_dir.join("instance_ed25519_key")
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("rosewire.db")
    }

    /// In dev mode a domain `HOST:0` names the HTTP listener's port once it is bound (tests
    /// start instances on ephemeral ports and need a domain that reaches them).
    pub fn settle_domain(&mut self, http_port: u16) {
        if let Some(host) = self.domain.strip_suffix(":0") {
            self.domain = format!("{host}:{http_port}");
        }
    }

    /// How instances reach each other: `https://`, except in dev mode without
    /// `federation.dev_trusted_root`, where test instances speak plain `http://`. A dev
    /// network with a test CA (the trusted root set) speaks `https://` like a real one.
    pub fn scheme(&self) -> Scheme {
        if self.dev && self.federation.dev_trusted_root.is_none() {
            Scheme::Http
        } else {
            Scheme::Https
        }
    }

    /// Where this instance's HTTP API is reached: `{scheme}://DOMAIN` (see [`Config::scheme`]).
    pub fn base_url(&self) -> String {
        self.scheme().base_url(&self.domain)
    }

    pub fn config_path_in_data_dir(data_dir: &Path) -> PathBuf {
        data_dir.join("rosewire.toml")
    }
}

/// The scheme every instance URL of a network uses, ours and every peer's alike: one
/// network speaks one scheme. Chosen once by [`Config::scheme`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// The rule: TLS, verified against the public roots (or, in dev mode, the test CA of
    /// `federation.dev_trusted_root`).
    Https,
    /// Dev mode without a trusted root only: plain HTTP between local test instances.
    Http,
}

impl Scheme {
    /// `"https://"` or `"http://"`.
    pub fn prefix(self) -> &'static str {
        match self {
            Scheme::Https => "https://",
            Scheme::Http => "http://",
        }
    }

    /// Where an instance named `domain` is reached: `https://DOMAIN` (or `http://DOMAIN`).
    pub fn base_url(self, domain: &str) -> String {
        format!("{}{domain}", self.prefix())
    }

    /// The port of a domain that names none: 443, or 80.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Https => 443,
            Scheme::Http => 80,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// A host name of letters, digits, `-` and `.`; in dev mode also `host:port`.
pub fn valid_domain(domain: &str, dev: bool) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) if dev => (h, Some(p)),
        _ => (domain, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= MAX_DOMAIN_LEN
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    // Port 0 (dev only) stands for the port the HTTP listener gets: see `Config::settle_domain`.
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
    host_ok && port_ok
}

/// The machine's host name, or `localhost`.
fn default_domain() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| valid_domain(s, false))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// `$STATE_DIRECTORY` (systemd), else `$XDG_DATA_HOME/rosewire`, else
/// `~/.local/share/rosewire`, else `./rosewire-data`.
pub fn default_data_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = env("STATE_DIRECTORY") {
        // systemd may pass several colon-separated directories; the first is ours.
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        return PathBuf::from(first);
    }
    if let Some(xdg) = env("XDG_DATA_HOME") {
        return xdg.join("rosewire");
    }
    if let Some(home) = env("HOME") {
        return home.join(".local/share/rosewire");
    }
    PathBuf::from("rosewire-data")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"))
    }

    #[test]
    fn the_embedded_default_config_parses_and_validates() {
        let config = parse(DEFAULT_CONFIG_TOML).expect("default config parses");
        config.validate().expect("default config is valid");
        assert_eq!(config.chat.replay_lines, 50);
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let err = parse("[ssh]\nlisten = \"127.0.0.1:22\"\nmax_conections = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_conections"), "{err}");
    }

    #[test]
    fn validation_names_the_bad_value() {
        let check = |text: &str, needle: &str| {
            let err = parse(text).unwrap().validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        };
        check("domain = \"bad domain\"", "\"bad domain\"");
        check("domain = \"a.example:8080\"", "a.example:8080");
        check("[chat]\nreplay_lines = 100000", "100000");
        check("[federation]\nbootstrap = [\"http://x\"]", "needs --dev");
        check(
            "dev = true\n[federation]\nbootstrap = [\"https://127.0.0.2:8443\"]",
            "must start with http://",
        );
        check(
            "[federation]\nbootstrap = [\"https://rose.example/inbox\"]",
            "has a path",
        );
        check(
            "[federation]\ndev_trusted_root = \"/etc/hostname\"",
            "for development only",
        );
        check(
            "dev = true\n[federation]\ndev_trusted_root = \"/no/such/ca.pem\"",
            "\"/no/such/ca.pem\" is not a file",
        );
        check(
            "[federation]\nrelay_uploads = 257",
            "federation.relay_uploads = 257 must be between 1 and 256",
        );
        check(
            "[federation]\nrelay_uploads = 8\nrelay_uploads_per_peer = 9",
            "federation.relay_uploads_per_peer = 9 must be between 1 and federation.relay_uploads (8)",
        );
        check("[ssh]\nmax_connections = 0", "max_connections");
        check("[ssh]\nlogin_grace_secs = 0", "login_grace_secs");
        check("[ssh]\nmax_sessions = 0", "ssh.max_sessions = 0");
        check("[http]\nmax_connections = 0", "http.max_connections");
        check("[http]\nmax_body_bytes = 0", "http.max_body_bytes = 0");
        check("[http]\ntls_cert = \"c.pem\"", "http.tls_key is not");
        check("[http]\ntls_key = \"k.pem\"", "http.tls_cert is not");
        check("[library]\nmax_entries = 0", "library.max_entries = 0");
        check(
            "[library]\nmax_open_files_per_user = 0",
            "library.max_open_files_per_user = 0",
        );
        check(
            "[library]\nmax_uploads_per_user = 1000",
            "library.max_uploads_per_user = 1000",
        );
        check(
            "[library]\nmax_downloads_per_user = 0",
            "library.max_downloads_per_user = 0",
        );
        check(
            "[federation]\ndev_skip_verify = true",
            "federation.dev_skip_verify turns off the checking",
        );
        check(
            "[federation]\nmax_remote_files_per_peer = 20000000",
            "federation.max_remote_files_per_peer = 20000000",
        );
        check(
            "[federation]\ngossip_interval_secs = 0",
            "federation.gossip_interval_secs = 0",
        );
        check(
            "[federation]\ninbox_per_second = 0",
            "federation.inbox_per_second = 0",
        );
        check(
            "[federation]\ninbox_per_second = 2000000",
            "federation.inbox_per_second = 2000000",
        );
        check("[federation]\nblock = [\"bad domain\"]", "\"bad domain\"");
        check("[federation]\nallow_only = [\"*.x.*\"]", "\"*.x.*\"");
        check("[federation]\nallow_only = []", "allow_only = []");
    }

    #[test]
    fn max_startups_parses_like_openssh_and_names_a_bad_value() {
        let startups = |text: &str| parse(&format!("[ssh]\nmax_startups = {text:?}"));
        let ok = |text: &str| startups(text).unwrap().ssh.max_startups;
        assert_eq!(ok("10:30:100"), MaxStartups::default());
        assert_eq!(
            ok("5"),
            MaxStartups {
                start: 5,
                rate: 100,
                full: 5
            }
        );
        for bad in [
            "",
            "ten",
            "10:30",
            "0:30:100",
            "10:0:100",
            "10:101:100",
            "50:30:10",
        ] {
            let err = startups(bad).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{bad:?}")) && err.contains("start:rate:full"),
                "{err}"
            );
        }
    }

    #[test]
    fn max_startups_drops_at_rate_past_start_rising_to_all_at_full() {
        let m = MaxStartups::default();
        assert_eq!(m.drop_percent(9), 0);
        assert_eq!(m.drop_percent(10), 30);
        assert_eq!(m.drop_percent(55), 65);
        assert_eq!(m.drop_percent(99), 99);
        assert_eq!(m.drop_percent(100), 100);
        assert_eq!(m.drop_percent(5000), 100);
        let single: MaxStartups = "4".parse().unwrap();
        assert_eq!((single.drop_percent(3), single.drop_percent(4)), (0, 100));
    }

    #[test]
    fn a_dev_domain_with_port_zero_takes_the_http_port() {
        let mut config = parse("dev = true\ndomain = \"127.0.0.3:0\"").unwrap();
        config.settle_domain(8443);
        assert_eq!(config.domain, "127.0.0.3:8443");
        assert_eq!(config.base_url(), "http://127.0.0.3:8443");
    }

    #[test]
    fn the_domain_is_compared_lowercase() {
        let mut config = parse("domain = \"Rose.Example\"").unwrap();
        config.normalize();
        assert_eq!(config.domain, "rose.example");
        assert_eq!(config.base_url(), "https://rose.example");
    }

    #[test]
    fn peers_speak_https_unless_dev_without_a_trusted_root() {
        let scheme = |text: &str| parse(text).unwrap().scheme();
        assert_eq!(scheme(""), Scheme::Https);
        assert_eq!(scheme("dev = true"), Scheme::Http);
        let ca = "dev = true\ndomain = \"127.0.0.2:8443\"\n[federation]\ndev_trusted_root = \"/etc/hostname\"\nbootstrap = [\"https://127.0.0.3:8443\"]";
        let config = parse(ca).unwrap();
        config.validate().unwrap();
        assert_eq!(config.scheme(), Scheme::Https);
        assert_eq!(config.base_url(), "https://127.0.0.2:8443");
        // A plain-http bootstrap URL does not fit a TLS dev network.
        let plain = ca.replace("https://127.0.0.3", "http://127.0.0.3");
        let err = parse(&plain).unwrap().validate().unwrap_err().to_string();
        assert!(err.contains("dev_trusted_root set"), "{err}");
    }

    #[test]
    fn federation_lists_parse_into_a_policy() {
        let config = parse(
            "[federation]\nblock = [\"*.evil.example\"]\nallow_only = [\"rose.example\", \"a.evil.example\"]",
        )
        .unwrap();
        config.validate().unwrap();
        let policy = crate::fed::policy::Policy::from_config(&config.federation);
        assert!(policy.allows("rose.example"));
        assert!(!policy.allows("a.evil.example"));
        assert!(!policy.allows("other.example"));
    }

    #[test]
    fn dev_mode_gossips_at_most_every_second() {
        let config = parse("[federation]\ngossip_interval_secs = 120").unwrap();
        let every = |dev| config.federation.effective_gossip_interval(dev);
        assert_eq!(every(false), std::time::Duration::from_secs(120));
        assert_eq!(every(true), DEV_GOSSIP_INTERVAL);
        assert_eq!(
            Config::default()
                .federation
                .effective_gossip_interval(false),
            std::time::Duration::from_secs(60)
        );
    }

    #[test]
    fn the_inbox_rate_is_a_burst_of_two_seconds_then_the_configured_rate() {
        let default = Config::default().federation.inbox_rate();
        assert_eq!(default, (2_000, std::time::Duration::from_millis(1)));
        let raised = parse("[federation]\ninbox_per_second = 4000").unwrap();
        raised.validate().unwrap();
        assert_eq!(
            raised.federation.inbox_rate(),
            (8_000, std::time::Duration::from_micros(250))
        );
    }

    #[test]
    fn dev_mode_accepts_a_port_in_the_domain() {
        let config = parse("dev = true\ndomain = \"127.0.0.3:8080\"").unwrap();
        config.validate().unwrap();
    }
}
