//! RoseWire: a federated, privacy-preserving chat and file-sharing network that people reach
//! with the SSH client they already have.
//!
//! # Layout
//! - [`cli`]: the `rosewire` command line (`serve`, `init`), start-up and shutdown.
//! - [`config`]: the TOML configuration, its defaults and validation.
//! - [`app`]: [`app::App`], the state every adapter shares.
//! - [`accept`]: what the SSH and HTTP accept loops share: back-off, per-address counts,
//!   rate-limited refusal logs, drain on shutdown.
//! - Domain core, free of SSH and HTTP:
//!   - [`nick`]: nickname rules;
//!   - [`chat`]: the chat room, presence, rate limit, delivery to sessions;
//!   - [`cmd`]: one file per command, run for a verified user;
//!   - [`catalog`]: search, browse, lookups by id, share and unshare, as commands see them;
//!   - [`library`]: users' files on disk and in the catalog;
//!   - [`transfer`]: downloads: where a file's bytes are and how they travel, verified (a
//!     local file hashed whole, a relayed one proven chunk group by chunk group);
//!   - [`quota`]: per-user reservations (bytes, uploads, entries) for work in progress;
//!   - [`rate`]: token buckets keyed by user or address, time passed in;
//!   - [`profile`]: users' public profiles (bio, keys, joined), local or remote, and their
//!     JSON form.
//! - [`store`]: SQLite on its own thread: migrations, users and keys, chat lines.
//! - Adapters:
//!   - [`ssh`]: russh server, authentication, session tasks (shell, line mode, exec);
//!   - [`sftp`]: the SFTP subsystem over a user's `library/` and `downloads/`;
//!   - [`http`]: the HTTP endpoint (federation, health, landing page), its request body
//!     limit, and TLS reloaded on SIGHUP.
//! - [`fed`]: federation: the instance key, signed requests (RFC 9421), the S2S client,
//!   activities, WebFinger, profiles, catalogs and files served to and fetched from other
//!   instances.
//! - [`keys`]: Ed25519 key files.
//!
//! The interactive shell's screen, line editor and command grammar live in the sans-IO crate
//! `rosewire-shell` (`shell/`).

pub mod accept;
pub mod app;
pub mod catalog;
pub mod chat;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod fed;
pub mod http;
pub mod keys;
pub mod library;
pub mod messages;
pub mod nick;
pub mod profile;
pub mod quota;
pub mod rate;
pub mod sftp;
pub mod ssh;
pub mod store;
pub mod transfer;
