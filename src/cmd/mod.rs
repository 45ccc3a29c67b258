//! Commands: one file each, the same shape in each (`run(ctx, args) -> Result<Output, CmdError>`).
//!
//! **Boundary:** commands know nothing of SSH. The session adapter parses a line with
//! `rosewire_shell`, calls [`run`], and shows the [`Output`] as shell messages or as exec
//! stdout; a [`CmdError`] becomes an error message, or stderr and exit status 1 or 2.

mod browse;
mod get;
mod help;
pub mod history;
mod ignore;
mod library;
mod more;
mod msg;
mod msgs;
mod peers;
mod reply;
mod search;
mod share;
mod transfers;
mod unignore;
mod unshare;

mod bio;
mod keys;
mod me;
mod say;
mod who;
mod whois;

use rosewire_shell::Command;

use crate::app::{App, User};
use crate::catalog::CatalogFile;
use crate::store::StoreError;
use crate::transfer::Download;

/// What a command runs with.
pub struct Ctx<'a> {
    pub app: &'a App,
    pub user: &'a User,
    /// What earlier commands of this session left for later ones.
    pub session: &'a mut SessionState,
    /// Exec form (`ssh host get ID`): commands are named without a slash, and there is no
    /// later command to continue a listing.
    pub exec: bool,
}

impl Ctx<'_> {
    /// How the user types command `name` here: `/name` in a shell, `name` in exec form.
    pub fn cmd(&self, name: &str) -> String {
        if self.exec {
            name.to_owned()
        } else {
            format!("/{name}")
        }
    }

    /// The line that says how to see the next page of `what`.
    pub fn more_hint(&self, what: &str, next_page: usize) -> String {
        if self.exec {
            format!("more {what}: --page {next_page}")
        } else {
            format!("more {what}: /more (or --page {next_page})")
        }
    }
}

/// Per-session memory of commands: the last search, for `/more` and `/get N`.
#[derive(Debug, Default)]
pub struct SessionState {
    pub last_search: Option<search::LastSearch>,
    /// The last search or listing, which `/more` continues.
    pub more: Option<more::Continuation>,
}

/// What a command produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Lines of plain text (or JSON objects), in order.
    pub lines: Vec<String>,
    /// The session should end (`/quit`).
    pub quit: bool,
    /// A file to deliver (`/get`): into `downloads/` in a shell, to stdout in exec form.
    pub download: Option<Download>,
    /// The first byte of `download` to deliver (`get --offset`, exec form only).
    pub offset: u64,
    /// Something for the shell's own downloads (`/transfers`, `/cancel N`).
    pub transfers: Option<TransfersAction>,
}

/// What `/transfers` and `/cancel` ask of the shell that runs the downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransfersAction {
    List,
    Cancel(u64),
}

impl Output {
    fn lines(lines: Vec<String>) -> Output {
        Output {
            lines,
            ..Output::default()
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CmdError {
    /// The command ran and failed (exit status 1).
    #[error("{0}")]
    Failed(String),
    /// The command was used wrongly (exit status 2).
    #[error("{0}")]
    Usage(String),
}

impl CmdError {
    pub fn exit_status(&self) -> u32 {
        match self {
            CmdError::Failed(_) => 1,
            CmdError::Usage(_) => 2,
        }
    }
}

pub async fn run(ctx: &mut Ctx<'_>, command: Command) -> Result<Output, CmdError> {
    match command {
        Command::Help { topic } => help::run(topic.as_deref()).map(|mut out| {
            if ctx.exec {
                // Usage lines name commands as typed here: `history [N]`, not `/history [N]`.
                for line in &mut out.lines {
                    *line = rosewire_shell::command::exec_wording(line);
                }
            }
            out
        }),
        Command::Who { json } => Ok(who::run(ctx, json)),
        Command::Peers { json } => Ok(peers::run(ctx, json).await),
        Command::Whois { user, json } => whois::run(ctx, &user, json).await,
        Command::Bio(bio) => bio::run(ctx, bio).await,
        Command::Say { text } => say::run(ctx, &text).await,
        Command::Me { action } => me::run(ctx, &action).await,
        Command::History { count, json } => history::run(ctx, count, json).await,
        Command::Keys(keys) => keys::run(ctx, keys).await,
        Command::Library { json, page } => library::run(ctx, json, page).await,
        Command::Share { pattern } => share::run(ctx, &pattern).await,
        Command::Unshare { pattern } => unshare::run(ctx, &pattern).await,
        Command::Search { query, json, page } => search::run(ctx, query, json, page).await,
        Command::More { json } => more::run(ctx, json).await,
        Command::Browse { user, json, page } => browse::run(ctx, &user, json, page).await,
        Command::Get { target, offset } => get::run(ctx, target, offset).await,
        Command::Transfers => transfers::run(ctx, TransfersAction::List),
        Command::Cancel { id } => transfers::run(ctx, TransfersAction::Cancel(id)),
        Command::Msg { to, text, sealed } => msg::run(ctx, &to, text, sealed).await,
        Command::Msgs(msgs) => msgs::run(ctx, msgs).await,
        Command::Reply { text } => reply::run(ctx, &text).await,
        Command::Ignore { user } => ignore::run(ctx, user.as_ref()).await,
        Command::Unignore { user } => unignore::run(ctx, &user).await,
        Command::Quit => Ok(Output {
            quit: true,
            ..Output::default()
        }),
    }
}

/// One JSON object as a line; serializing plain maps and strings cannot fail.
fn json_line(value: serde_json::Value) -> String {
    value.to_string()
}

use crate::profile::rfc3339;

/// The session user's catalogued files.
async fn my_files(ctx: &Ctx<'_>) -> Result<Vec<CatalogFile>, CmdError> {
    ctx.app
        .catalog
        .my_files(ctx.user.id)
        .await
        .map_err(store_failed)
}

/// A store failure, as a command failure.
fn store_failed(e: StoreError) -> CmdError {
    CmdError::Failed(format!("the catalog is unavailable: {e}"))
}

/// A store failure in private messages, as a command failure.
fn messages_failed(e: StoreError) -> CmdError {
    CmdError::Failed(format!("messages are unavailable: {e}"))
}
