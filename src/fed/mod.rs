//! Federation: how instances find each other, sign what they send, and share chat, catalogs
//! and profiles.

pub mod activity;
