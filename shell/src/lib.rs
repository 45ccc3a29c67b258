//! RoseWire's shell: the sans-IO core of the interactive SSH shell and the command grammar.
//!
//! This crate knows nothing of sockets, SSH or SQL. The server feeds it raw bytes from the
//! client's terminal and messages from the chat; it answers with bytes to write to the
//! terminal and with the lines the user submitted. Time is an input too (`Message::at`).
//!
//! # Layout
//! - [`address`]: [`Address`], `@nick@domain`, parsed and rendered in one place.
//! - [`command`]: the command grammar (nom): shell lines (`/who`, plain chat) and exec
//!   command lines (`who --json`), quoted arguments, errors that point at the token.
//! - [`sanitize`]: makes untrusted text safe to put on a terminal.
//! - [`message`]: a line in the message area (chat, action, notice, error, output) and its
//!   plain-text form for line mode and exec.
//! - [`editor`]: the input line: editing keys, history, completion.
//! - [`screen`]: the screen model (message area, status line, input line) rendered with termwiz.
//! - [`scrollback`]: the messages a session keeps for paging back (PgUp/PgDn), bounded.
//! - [`shell`]: [`Shell`], which ties keys, editor and screen together.

pub mod address;
pub mod command;
pub mod editor;
pub mod keys;
pub mod message;
pub mod query;
pub mod sanitize;
pub mod screen;
pub mod scrollback;
pub mod shell;

pub use address::{Address, AddressError};
pub use command::{parse_exec, parse_shell_line, Command, Line, ParseError};
pub use message::{Message, MessageKind};
pub use sanitize::sanitize;
pub use shell::{Action, Shell, ShellConfig, Status};
