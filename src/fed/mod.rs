//! Federation: what instances say to each other over HTTP.
//!
//! - [`webfinger`]: `GET /.well-known/webfinger` (RFC 7033) for local users, and the lookup of
//!   a remote user with its back-check;
//! - [`profile`]: `GET /api/s2s/user/{address}`, and fetching a remote user's profile.

pub mod profile;
pub mod webfinger;
