//! Federation: instances that find each other, sign every request and share chat, catalogs
//! and profiles.
//!
//! - [`identity`]: the instance key, key ids, peers' public keys;
//! - [`signature`]: RFC 9421 signatures in our profile, RFC 9530 content digests;
//! - [`replay`]: the bounded nonce cache;
//! - [`client`]: the signed outgoing client and the instance document;
//! - [`verify`]: the warp filter for signed routes, keys pinned on first contact;
//! - [`activity`]: activities and their envelope, proof over the canonical JSON.

pub mod activity;
pub mod client;
pub mod identity;
pub mod replay;
pub mod signature;
pub mod verify;
