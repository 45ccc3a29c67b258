//! End-to-end tests: the real `rosewire` binary on loopback, driven by real OpenSSH clients
//! (`ssh`, `ssh -T`, `ssh -tt` under tmux) with keys made by `ssh-keygen`.

mod auth;
mod bidi;
mod chat;
mod exec;
mod federation;
mod federation_profiles;
mod federation_refusals;
mod federation_sig;
mod fetch;
mod holders;
mod hostile_net;
mod http;
mod library;
mod limits;
mod messages;
mod paging;
mod profile;
mod relay;
mod remote_catalog;
mod server;
mod sftp;
mod shell_tty;
mod tls;
mod transfers;
mod util;
