//! Federation: how instances find, trust and talk to each other.
//!
//! - [`gossip`]: the sans-IO gossip core (who knows whom), and its in-memory simulator.
//! - [`schedule`]: the sans-IO per-peer delivery schedule (backoff, unavailable, probes).
//! - [`target`]: the SSRF check of a peer's address after DNS, and `domain_from_url`.
//! - [`policy`]: the operator's `block` / `allow_only` lists.

pub mod gossip;
pub mod policy;
pub mod schedule;
pub mod target;
