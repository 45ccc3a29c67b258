//! Federation: what instances say to each other.
//!
//! - [`catalog`]: `GET /api/s2s/catalog`, the page of local shared files peers pull.

pub mod catalog;
