//! Federation: instances that find each other, sign every request and share chat, catalogs
//! and profiles.
//!
//! - [`identity`]: the instance key, key ids, peers' public keys;
//! - [`signature`]: RFC 9421 signatures in our profile, RFC 9530 content digests;
//! - [`replay`]: the bounded nonce cache;
//! - [`client`]: the signed outgoing client and the instance document;
//! - [`verify`]: the warp filter for signed routes, keys pinned on first contact;
//! - [`activity`]: activities and their envelope, proof over the canonical JSON;
//! - [`webfinger`]: `GET /.well-known/webfinger` (RFC 7033) for local users, and the lookup of
//!   a remote user with its back-check;
//! - [`profile`]: `GET /api/s2s/user/{address}`, and fetching a remote user's profile;
//! - [`catalog`]: `GET /api/s2s/catalog`, the page of local shared files peers pull;
//! - [`gossip`]: the sans-IO gossip core (who knows whom), and its in-memory simulator;
//! - [`schedule`]: the sans-IO per-peer delivery schedule (backoff, unavailable, probes);
//! - [`target`]: the SSRF check of a peer's address after DNS, and `domain_from_url`;
//! - [`policy`]: the operator's `block` / `allow_only` lists.

pub mod activity;
pub mod catalog;
pub mod client;
pub mod gossip;
pub mod identity;
pub mod policy;
pub mod profile;
pub mod replay;
pub mod schedule;
pub mod signature;
pub mod target;
pub mod verify;
pub mod webfinger;
