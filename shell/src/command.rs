//! The command grammar, written with nom.
//!
//! Two entry points share one grammar:
//! - [`parse_shell_line`]: a line typed in the interactive shell. `/cmd args` is a command,
//!   anything else is a chat line, `//text` sends the chat line `/text`.
//! - [`parse_exec`]: the command line of `ssh host COMMAND ARGS`; the leading slash is optional.
//!
//! The [`COMMANDS`] table drives everything: lookup, `/help`, tab completion and the
//! "did you mean" suggestion. Adding a command is one [`CommandSpec`] entry, one variant of
//! [`Command`] and one small `parse_*` function that turns its [`Args`] into that variant.
//!
//! Arguments are whitespace-separated words; `"a b"` and `'a b'` are single words, and a
//! backslash inside double quotes takes the next character literally. Commands whose argument
//! is free text (`/say`, `/me`, `/keys add`) take the rest of the line as typed instead.
//! Every error carries the byte offset of the offending token in the input.

use std::fmt;

use nom::branch::alt;
use nom::bytes::complete::{take_while, take_while1};
use nom::character::complete::{anychar, char, none_of};
use nom::combinator::opt;
use nom::multi::fold_many0;
use nom::sequence::{preceded, terminated};
use nom::{IResult, Parser};

use crate::address::Address;
use crate::query::{parse_query, Query};

/// Upper bound on one input line in bytes (chat lines and commands alike).
pub const MAX_LINE_BYTES: usize = 1024;

/// How far (in edits) a mistyped command name may be from a known one to be suggested.
const MAX_SUGGESTION_DISTANCE: usize = 2;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/help [CMD]`; the topic is the canonical command name (`"quit"` for `/help exit`).
    Help { topic: Option<String> },
    /// `/who [--json]`
    Who { json: bool },
    /// `/whois @user@domain [--json]`: a user's profile, local or remote.
    Whois { user: Address, json: bool },
    /// `/say TEXT`
    Say { text: String },
    /// `/me ACTION`
    Me { action: String },
    /// `/history [N] [--json]`
    History { count: Option<usize>, json: bool },
    /// `/keys [--json]`, `/keys add KEY...`, `/keys remove FINGERPRINT`
    Keys(KeysCommand),
    /// `/bio`, `/bio TEXT`, `/bio --clear`
    Bio(BioCommand),
    /// `/library [--json] [--page N]`; pages count from 1.
    Library { json: bool, page: usize },
    /// `/share NAME|GLOB`
    Share { pattern: String },
    /// `/unshare NAME|GLOB`
    Unshare { pattern: String },
    /// `/search QUERY [--json] [--page N]`; pages count from 1.
    Search {
        query: Query,
        json: bool,
        page: usize,
    },
    /// `/more [--json]`: the next page of the last listing (search, browse or library).
    More { json: bool },
    /// `/browse @user@domain [--json] [--page N]`; pages count from 1.
    Browse {
        user: Address,
        json: bool,
        page: usize,
    },
    /// `/get ID|N [--offset BYTES]`: `offset` (0 without one) is where the bytes start, so
    /// `ssh host get ID --offset N >> file` resumes a download.
    Get { target: GetTarget, offset: u64 },
    /// `/transfers`: this shell's downloads, running and waiting.
    Transfers,
    /// `/cancel N`: stops transfer N of `/transfers`.
    Cancel { id: u64 },
    /// `/peers [--json]`
    Peers { json: bool },
    /// `/msg @user@domain TEXT` (`/msg nick TEXT` for a user here). In exec form `text` may be
    /// absent: it is read from stdin; `--sealed` (exec only) reads age armor from stdin.
    Msg {
        to: Address,
        text: Option<String>,
        sealed: bool,
    },
    /// `/msgs`, `/msgs @user@domain [N]`, `/msgs --raw ID`
    Msgs(MsgsCommand),
    /// `/reply TEXT`: a private message to whoever sent the last one received.
    Reply { text: String },
    /// `/ignore` lists the ignored; `/ignore @user@domain` adds one.
    Ignore { user: Option<Address> },
    /// `/unignore @user@domain`
    Unignore { user: Address },
    /// `/quit` (also `/exit`)
    Quit,
}

impl Command {
    /// Whether the command was asked for JSON (`--json`): its output lines are JSON objects.
    pub fn json(&self) -> bool {
        match self {
            Command::Who { json }
            | Command::Peers { json }
            | Command::Whois { json, .. }
            | Command::History { json, .. }
            | Command::Library { json, .. }
            | Command::Search { json, .. }
            | Command::More { json }
            | Command::Browse { json, .. }
            | Command::Keys(KeysCommand::List { json })
            | Command::Msgs(MsgsCommand::List { json })
            | Command::Msgs(MsgsCommand::Show { json, .. }) => *json,
            _ => false,
        }
    }
}

/// What `/get` fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetTarget {
    /// A file id or a prefix of one: 8 to 64 lowercase hex digits.
    Id(String),
    /// A result number of the last search (from 1).
    Number(usize),
}

/// Shortest id prefix `/get` accepts.
pub const MIN_ID_PREFIX: usize = 8;
/// A full id: 32 bytes of BLAKE3 in hex.
pub const ID_LEN: usize = 64;

/// The `/keys` subcommands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysCommand {
    /// `/keys [--json]`
    List { json: bool },
    /// `/keys add KEY-TEXT` (the rest of the line, e.g. `ssh-ed25519 AAAA... comment`)
    Add { key: String },
    /// `/keys remove FINGERPRINT`
    Remove { fingerprint: String },
    /// `/keys @user[@domain]`: another user's public keys, one `authorized_keys` line each
    /// (for encrypting to them with `age -R`).
    Of { user: Address },
}

/// The `/msgs` forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgsCommand {
    /// `/msgs [--json]`: conversations, the most recent first, with unread counts.
    List { json: bool },
    /// `/msgs @user@domain [N] [--json]`: the last N messages with one user (marks them read).
    Show {
        with: Address,
        count: Option<usize>,
        json: bool,
    },
    /// `/msgs --raw ID`: one message's text exactly as it arrived (a sealed one's age armor).
    Raw { id: i64 },
}

/// The `/bio` forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BioCommand {
    /// `/bio`: show your bio.
    Show,
    /// `/bio TEXT` (the rest of the line as typed): set it.
    Set { text: String },
    /// `/bio --clear`: remove it.
    Clear,
}

/// What one line typed in the shell means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Nothing but whitespace.
    Empty,
    /// A chat line (trimmed).
    Chat(String),
    /// A command.
    Command(Command),
}

/// Why a line did not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What went wrong.
    pub kind: ParseErrorKind,
    /// Byte offset of the bad token in the input.
    pub offset: usize,
}

/// The kinds of [`ParseError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The command name is not in [`COMMANDS`]. `name` is as typed (with its slash, if any);
    /// `suggestion` is the closest known name.
    UnknownCommand {
        name: String,
        suggestion: Option<&'static str>,
    },
    /// The command is known but its arguments are wrong: missing, extra or invalid.
    Usage {
        command: &'static str,
        message: String,
    },
    /// A quoted argument has no closing quote; the offset points at the opening quote.
    UnterminatedQuote,
    /// The line is longer than [`MAX_LINE_BYTES`].
    TooLong { len: usize },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ParseErrorKind::UnknownCommand { name, suggestion } => {
                let bare = name.strip_prefix('/').unwrap_or(name);
                let slash = if name.starts_with('/') { "/" } else { "" };
                if bare.is_empty() {
                    return write!(f, "missing command name; try {slash}help");
                }
                write!(f, "unknown command \"{name}\"; ")?;
                match suggestion {
                    Some(known) => write!(f, "did you mean {slash}{known}?"),
                    None => write!(f, "try {slash}help"),
                }
            }
            ParseErrorKind::Usage { command, message } => {
                write!(f, "/{command}: {message}")?;
                if let Some(spec) = command_spec(command) {
                    write!(f, "; usage: {}", spec.usage)?;
                }
                Ok(())
            }
            ParseErrorKind::UnterminatedQuote => {
                write!(f, "unterminated quote at byte {}", self.offset)
            }
            ParseErrorKind::TooLong { len } => {
                write!(
                    f,
                    "line too long: {len} bytes (the limit is {MAX_LINE_BYTES})"
                )
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// One command of the grammar: its name, its documentation and its argument parser.
#[derive(Debug)]
pub struct CommandSpec {
    /// The canonical name, without the slash.
    pub name: &'static str,
    /// Other names that mean the same command (without the slash).
    pub aliases: &'static [&'static str],
    /// The usage line shown in errors and `/help`, e.g. `/history [N] [--json]`.
    pub usage: &'static str,
    /// One line for the `/help` overview.
    pub summary: &'static str,
    /// A few lines for `/help CMD`.
    pub help: &'static str,
    /// Turns the arguments into a [`Command`].
    parse: fn(&Args<'_>) -> Result<Command, ParseError>,
}

/// The known commands, in the order `/help` lists them. The source of `/help`, of tab
/// completion and of the "did you mean" suggestion.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "help",
        aliases: &[],
        usage: "/help [CMD]",
        summary: "list the commands, or explain one",
        help: "/help lists every command with a one-line summary.\n\
               /help CMD explains CMD (with or without its slash), e.g. /help history.",
        parse: parse_help,
    },
    CommandSpec {
        name: "who",
        aliases: &[],
        usage: "/who [--json]",
        summary: "list the people online",
        help: "/who lists the people online on this instance.\n\
               --json prints one JSON object per person (handy with `ssh host who --json`).",
        parse: parse_who,
    },
    CommandSpec {
        name: "peers",
        aliases: &[],
        usage: "/peers [--json]",
        summary: "list the instances this one knows",
        help: "/peers lists the other instances this one knows, with their state:\n\
               ok (reachable), backoff (failing, retried with growing pauses) or\n\
               unavailable (failing for days, tried rarely), and when each was last seen.\n\
               --json prints one object per peer: {\"domain\",\"state\",\"last_seen\"}.",
        parse: parse_peers,
    },
    CommandSpec {
        name: "whois",
        aliases: &[],
        usage: "/whois @user@domain [--json]",
        summary: "show someone's profile",
        help: "/whois @alice@rose.example shows alice's profile: home instance, when she joined,\n\
               how many files she shares, her SSH key fingerprints and her bio.\n\
               /whois alice for a user here. --json prints one object:\n\
               {\"address\",\"nick\",\"domain\",\"joined\",\"shared_files\",\n\
               \"keys\":[{\"fingerprint\",\"public_key\"}],\"bio\"}.",
        parse: parse_whois,
    },
    CommandSpec {
        name: "say",
        aliases: &[],
        usage: "/say TEXT",
        summary: "send a chat line",
        help: "/say TEXT sends TEXT to the chat, exactly as typed.\n\
               In the shell a line that does not start with / is a chat line too;\n\
               use /say (or //) to send a line that starts with a slash.",
        parse: parse_say,
    },
    CommandSpec {
        name: "me",
        aliases: &[],
        usage: "/me ACTION",
        summary: "send an action (* alice waves)",
        help: "/me ACTION sends an action line: `/me waves` shows as `* alice waves`.",
        parse: parse_me,
    },
    CommandSpec {
        name: "history",
        aliases: &[],
        usage: "/history [N] [--json]",
        summary: "show the last chat lines",
        help: "/history shows recent chat lines; /history N shows the last N.\n\
               --json prints one JSON object per line.",
        parse: parse_history,
    },
    CommandSpec {
        name: "msg",
        aliases: &[],
        usage: "/msg @user@domain TEXT",
        summary: "send a private message",
        help: "/msg @bob@rose.example TEXT sends TEXT to bob alone, on any instance; /msg bob TEXT\n\
               for a user here. It goes from this instance straight to bob's, nowhere else;\n\
               /msgs @bob@rose.example shows whether it is queued, delivered or failed.\n\
               Sealed, end to end: `age -a -R <(ssh HOST keys @bob@B) < note.txt |\n\
               ssh HOST msg --sealed @bob@B` sends age armor that no instance can read.",
        parse: parse_msg,
    },
    CommandSpec {
        name: "msgs",
        aliases: &[],
        usage: "/msgs [@user@domain [N]] [--json] | /msgs --raw ID",
        summary: "list your private conversations, or read one",
        help: "/msgs lists your conversations, the most recent first, with unread counts.\n\
               /msgs @bob@rose.example [N] shows the last N messages with bob (20 by default)\n\
               and marks them read. --json prints one object per message:\n\
               {\"id\",\"from\",\"to\",\"text\",\"at\",\"state\",\"sealed\"}.\n\
               /msgs --raw ID prints one message's text as it arrived: for a sealed one,\n\
               `ssh HOST msgs --raw ID | age -d -i ~/.ssh/id_ed25519` reads it.",
        parse: parse_msgs,
    },
    CommandSpec {
        name: "reply",
        aliases: &[],
        usage: "/reply TEXT",
        summary: "answer the last private message",
        help: "/reply TEXT sends TEXT privately to whoever sent you the last private message.",
        parse: parse_reply,
    },
    CommandSpec {
        name: "ignore",
        aliases: &[],
        usage: "/ignore [@user@domain]",
        summary: "stop seeing someone's chat lines and messages",
        help: "/ignore @bob@rose.example: bob's chat lines and private messages no longer reach\n\
               you, in every session, until /unignore. /ignore alone lists whom you ignore.",
        parse: parse_ignore,
    },
    CommandSpec {
        name: "unignore",
        aliases: &[],
        usage: "/unignore @user@domain",
        summary: "see someone's chat and messages again",
        help: "/unignore @bob@rose.example undoes /ignore.",
        parse: parse_unignore,
    },
    CommandSpec {
        name: "keys",
        aliases: &[],
        usage: "/keys [--json] | /keys add KEY | /keys remove FINGERPRINT | /keys @user@domain",
        summary: "list, add or remove your SSH keys",
        help: "/keys lists the SSH public keys that may log in as you, and those waiting for\n\
               confirmation (--json for JSON).\n\
               /keys add KEY proposes a key: paste the whole line, e.g. `ssh-ed25519 AAAA... laptop`;\n\
               it joins once you log in with it as NICK+CODE, the code it prints.\n\
               /keys remove FINGERPRINT removes a key or cancels a waiting one (SHA256:... as\n\
               /keys shows it).\n\
               /keys @bob@rose.example prints bob's public keys, one authorized_keys line each\n\
               (from his home instance): `age -R` encrypts to them.",
        parse: parse_keys,
    },
    CommandSpec {
        name: "bio",
        aliases: &[],
        usage: "/bio [TEXT] | /bio --clear",
        summary: "show or set the bio others see in /whois",
        help: "/bio shows your bio; /bio TEXT sets it (the rest of the line, as typed);\n\
               /bio --clear removes it. Escape sequences and controls are dropped, and a bio\n\
               holds at most 280 characters. Anyone on the network may read it with /whois.",
        parse: parse_bio,
    },
    CommandSpec {
        name: "library",
        aliases: &["lib"],
        usage: "/library [--json] [--page N]",
        summary: "list your files and what you share",
        help: "/library lists the files you uploaded into library/ (with sftp or scp):\n\
               id prefix, size, whether it is shared, and its path.\n\
               100 files at a time: /more (or --page N) shows the next ones.\n\
               --json prints {\"id\",\"name\",\"path\",\"size\",\"shared\"} per file.",
        parse: parse_library,
    },
    CommandSpec {
        name: "share",
        aliases: &[],
        usage: "/share NAME|GLOB",
        summary: "offer files of your library to the network",
        help: "/share NAME shares one file (its name or its path in library/).\n\
               /share GLOB shares every match: `/share *.flac`, `/share Jazz/*`.",
        parse: parse_share,
    },
    CommandSpec {
        name: "unshare",
        aliases: &[],
        usage: "/unshare NAME|GLOB",
        summary: "stop sharing files",
        help: "/unshare NAME|GLOB stops sharing the matching files; they stay in your library.",
        parse: parse_unshare,
    },
    CommandSpec {
        name: "search",
        aliases: &["s"],
        usage: "/search QUERY [--json] [--page N]",
        summary: "find shared files",
        help: "/search QUERY finds files shared here and on other instances; results are\n\
               numbered for /get N. whole words must all match (`miles davis`; `beat*` for a\n\
               prefix), \"exact phrase\", -exclude, ext:flac, size:>10M, size:<1G,\n\
               user:@alice@domain, instance:domain.\n\
               100 results at a time: /more (or --page N) shows the next ones.",
        parse: parse_search,
    },
    CommandSpec {
        name: "more",
        aliases: &[],
        usage: "/more [--json]",
        summary: "the next page of the last search or listing",
        help: "/more shows the next 100 lines of your last /search, /browse or /library.",
        parse: parse_more,
    },
    CommandSpec {
        name: "browse",
        aliases: &[],
        usage: "/browse @user@domain [--json] [--page N]",
        summary: "list one user's shared files",
        help:
            "/browse @alice@rose.example lists what alice shares; /browse alice for a user here.\n\
               100 files at a time: /more (or --page N) shows the next ones.",
        parse: parse_browse,
    },
    CommandSpec {
        name: "get",
        aliases: &[],
        usage: "/get ID|N [--offset BYTES]",
        summary: "download a file",
        help: "/get N fetches result N of your last search; /get ID fetches a file by id\n\
               (its full id or 8+ leading hex digits). In the shell the file lands in\n\
               downloads/; over `ssh host get ID > file` its bytes go to stdout, and\n\
               `ssh host get ID --offset BYTES >> file` sends only the bytes from there\n\
               (to resume). Files on other instances come through this one, verified.",
        parse: parse_get,
    },
    CommandSpec {
        name: "transfers",
        aliases: &[],
        usage: "/transfers",
        summary: "list your downloads, running and waiting",
        help: "/transfers lists this shell's downloads, numbered: the running ones with their\n\
               progress, rate and time left, the waiting ones with how many of your downloads\n\
               are ahead (a user runs a few at once, across all their sessions).",
        parse: parse_transfers,
    },
    CommandSpec {
        name: "cancel",
        aliases: &[],
        usage: "/cancel N",
        summary: "stop a download",
        help: "/cancel N stops download N of /transfers, running or waiting.",
        parse: parse_cancel,
    },
    CommandSpec {
        name: "quit",
        aliases: &["exit"],
        usage: "/quit",
        summary: "leave (also /exit or Ctrl-D)",
        help: "/quit (or /exit, or Ctrl-D on an empty line) ends the session.",
        parse: parse_quit,
    },
];

/// The spec of a command by name or alias; accepts `"who"` and `"/who"`, any case.
pub fn command_spec(name: &str) -> Option<&'static CommandSpec> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    COMMANDS.iter().find(|spec| {
        spec.name.eq_ignore_ascii_case(bare)
            || spec.aliases.iter().any(|a| a.eq_ignore_ascii_case(bare))
    })
}

/// `text` worded for exec form, where commands are typed without a slash: each `/name` that
/// starts a word and names a command (`/get`, `/history:`) loses its slash. Anything else,
/// such as `library/get` or `/nosuch`, stays as it is.
pub fn exec_wording(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut at_word_start = true;
    while let Some(c) = rest.chars().next() {
        if c == '/' && at_word_start {
            let after = &rest[1..];
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(after.len());
            let word = &after[..end];
            if !word.is_empty() && command_spec(word).is_some() {
                out.push_str(word);
                rest = &after[end..];
                at_word_start = false;
                continue;
            }
        }
        out.push(c);
        at_word_start = c.is_whitespace() || matches!(c, '(' | '"' | '\'' | '`' | ',' | ';');
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Every command name and alias, without slashes, in table order.
pub fn command_names() -> impl Iterator<Item = &'static str> {
    COMMANDS
        .iter()
        .flat_map(|spec| std::iter::once(spec.name).chain(spec.aliases.iter().copied()))
}

/// A line typed in the interactive shell: `/cmd args` is a command, anything else is chat
/// (`//text` sends a chat line starting with `/`).
pub fn parse_shell_line(input: &str) -> Result<Line, ParseError> {
    check_length(input)?;
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Ok(Line::Empty);
    }
    if let Some(chat) = trimmed.strip_prefix("//") {
        return Ok(Line::Chat(format!("/{chat}")));
    }
    if !trimmed.starts_with('/') {
        return Ok(Line::Chat(trimmed.to_owned()));
    }
    parse_command(input, true).map(Line::Command)
}

/// The command line of `ssh host COMMAND ARGS`: the same grammar, leading slash optional.
pub fn parse_exec(input: &str) -> Result<Command, ParseError> {
    check_length(input)?;
    parse_command(input, false)
}

fn check_length(input: &str) -> Result<(), ParseError> {
    if input.len() > MAX_LINE_BYTES {
        return Err(ParseError {
            kind: ParseErrorKind::TooLong { len: input.len() },
            offset: MAX_LINE_BYTES,
        });
    }
    Ok(())
}

/// Byte offset of `rest` (a suffix of `input`) within `input`.
fn offset_of(input: &str, rest: &str) -> usize {
    input.len() - rest.len()
}

fn whitespace(input: &str) -> IResult<&str, &str> {
    take_while(char::is_whitespace).parse(input)
}

/// `[/]name`: the slash (required in the shell) and the command name up to whitespace.
fn command_head(input: &str, slash_required: bool) -> IResult<&str, (Option<char>, &str)> {
    let slash = if slash_required {
        char('/').map(Some).parse(input)
    } else {
        opt(char('/')).parse(input)
    };
    let (rest, slash) = slash?;
    let (rest, name) = take_while(|c: char| !c.is_whitespace()).parse(rest)?;
    Ok((rest, (slash, name)))
}

fn parse_command(input: &str, slash_required: bool) -> Result<Command, ParseError> {
    let (after_space, _) = whitespace(input).map_err(|_| internal_error(input))?;
    let start = offset_of(input, after_space);
    let (rest, (slash, name)) =
        command_head(after_space, slash_required).map_err(|_| internal_error(input))?;
    let Some(spec) = command_spec(name) else {
        let typed = match slash {
            Some(_) => format!("/{name}"),
            None => name.to_owned(),
        };
        return Err(ParseError {
            kind: ParseErrorKind::UnknownCommand {
                name: typed,
                suggestion: suggest(name),
            },
            offset: start,
        });
    };
    let args = Args { spec, input, rest };
    (spec.parse)(&args)
}

/// A parser failure that the grammar cannot produce (all head parsers accept any input);
/// reported as an unknown command rather than a panic.
fn internal_error(input: &str) -> ParseError {
    ParseError {
        kind: ParseErrorKind::UnknownCommand {
            name: input.trim().to_owned(),
            suggestion: None,
        },
        offset: 0,
    }
}

/// The closest known command name to `typed`: a unique name it is a prefix of, or else the
/// name within [`MAX_SUGGESTION_DISTANCE`] edits.
fn suggest(typed: &str) -> Option<&'static str> {
    let typed = typed.to_lowercase();
    if typed.is_empty() {
        return None;
    }
    let mut prefixed = command_names().filter(|name| name.starts_with(&typed));
    if let (Some(only), None) = (prefixed.next(), prefixed.next()) {
        return Some(only);
    }
    command_names()
        .map(|name| (edit_distance(&typed, name), name))
        .filter(|(distance, _)| *distance <= MAX_SUGGESTION_DISTANCE)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// One argument word and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    text: String,
    /// Byte offset in the whole input.
    offset: usize,
    /// Quoted words are never flags: `"--json"` is the text `--json`.
    quoted: bool,
}

impl Word {
    fn is_flag(&self) -> bool {
        !self.quoted && self.text.starts_with("--")
    }
}

/// The body of a double-quoted word: backslash takes the next char literally.
fn double_quoted_body(input: &str) -> IResult<&str, String> {
    fold_many0(
        alt((preceded(char('\\'), anychar), none_of("\\\""))),
        String::new,
        |mut text, c| {
            text.push(c);
            text
        },
    )
    .parse(input)
}

fn double_quoted(input: &str) -> IResult<&str, String> {
    preceded(char('"'), terminated(double_quoted_body, char('"'))).parse(input)
}

fn single_quoted(input: &str) -> IResult<&str, String> {
    preceded(
        char('\''),
        terminated(take_while(|c| c != '\''), char('\'')),
    )
    .map(str::to_owned)
    .parse(input)
}

fn bare_word(input: &str) -> IResult<&str, String> {
    take_while1(|c: char| !c.is_whitespace())
        .map(str::to_owned)
        .parse(input)
}

/// The arguments of one command: the rest of the line after the command name.
#[derive(Debug)]
struct Args<'a> {
    spec: &'static CommandSpec,
    /// The whole input line, for offsets.
    input: &'a str,
    /// What follows the command name (starts with whitespace or is empty).
    rest: &'a str,
}

impl Args<'_> {
    /// The rest of the line as typed, trimmed, and its offset.
    fn text(&self) -> (&str, usize) {
        let start = self.rest.trim_start();
        (start.trim_end(), offset_of(self.input, start))
    }

    /// The rest of the line split into words (quotes honoured).
    fn words(&self) -> Result<Vec<Word>, ParseError> {
        let mut words = Vec::new();
        let mut rest = self.rest;
        while let Ok((after, _)) = whitespace(rest) {
            rest = after;
            let Some(first) = rest.chars().next() else {
                break;
            };
            let offset = offset_of(self.input, rest);
            let parsed = match first {
                '"' => double_quoted(rest),
                '\'' => single_quoted(rest),
                _ => bare_word(rest),
            };
            let Ok((after, text)) = parsed else {
                return Err(ParseError {
                    kind: ParseErrorKind::UnterminatedQuote,
                    offset,
                });
            };
            words.push(Word {
                text,
                offset,
                quoted: first == '"' || first == '\'',
            });
            rest = after;
        }
        Ok(words)
    }

    /// A usage error for this command at `offset`.
    fn usage(&self, offset: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            kind: ParseErrorKind::Usage {
                command: self.spec.name,
                message: message.into(),
            },
            offset,
        }
    }

    /// The offset just past the input, where a missing argument would go.
    fn end(&self) -> usize {
        self.input.trim_end().len()
    }

    /// Splits off `--json` (the only flag so far); any other flag is an error.
    fn json_and_positionals(&self, words: Vec<Word>) -> Result<(bool, Vec<Word>), ParseError> {
        let mut json = false;
        let mut positionals = Vec::new();
        for word in words {
            if word.is_flag() {
                if word.text == "--json" {
                    json = true;
                } else {
                    return Err(
                        self.usage(word.offset, format!("unknown option \"{}\"", word.text))
                    );
                }
            } else {
                positionals.push(word);
            }
        }
        Ok((json, positionals))
    }

    /// Splits off `--json` and `--page N` (listings); any other flag is an error.
    fn listing_flags(&self, words: Vec<Word>) -> Result<(bool, usize, Vec<Word>), ParseError> {
        let (mut json, mut page) = (false, 1);
        let mut positionals = Vec::new();
        let mut iter = words.into_iter();
        while let Some(word) = iter.next() {
            match word.text.as_str() {
                "--json" => json = true,
                "--page" => page = self.page_number(iter.next().as_ref())?,
                _ if word.is_flag() => {
                    return Err(self.usage(word.offset, format!("unknown option \"{}\"", word.text)))
                }
                _ => positionals.push(word),
            }
        }
        Ok((json, page, positionals))
    }

    /// The number after `--page`: 1 or more.
    fn page_number(&self, word: Option<&Word>) -> Result<usize, ParseError> {
        let Some(n) = word else {
            return Err(self.usage(self.end(), "--page needs a number"));
        };
        match n.text.parse::<usize>() {
            Ok(p) if p >= 1 => Ok(p),
            _ => Err(self.usage(n.offset, format!("\"{}\" is not a page number", n.text))),
        }
    }

    /// An error for the first word in `extra`, if any.
    fn no_more(&self, extra: &[Word]) -> Result<(), ParseError> {
        match extra.first() {
            Some(word) => Err(self.usage(
                word.offset,
                format!("unexpected argument \"{}\"", word.text),
            )),
            None => Ok(()),
        }
    }

    /// The whole rest of the line, which must not be empty; `what` names it in the error.
    fn required_text(&self, what: &str) -> Result<String, ParseError> {
        let (text, _) = self.text();
        if text.is_empty() {
            return Err(self.usage(self.end(), format!("missing {what}")));
        }
        Ok(text.to_owned())
    }
}

fn parse_help(args: &Args<'_>) -> Result<Command, ParseError> {
    let words = args.words()?;
    let (topic, extra) = match words.split_first() {
        Some((topic, extra)) => (Some(topic), extra),
        None => (None, &[][..]),
    };
    args.no_more(extra)?;
    let Some(topic) = topic else {
        return Ok(Command::Help { topic: None });
    };
    match command_spec(&topic.text) {
        Some(spec) => Ok(Command::Help {
            topic: Some(spec.name.to_owned()),
        }),
        None => {
            let bare = topic.text.strip_prefix('/').unwrap_or(&topic.text);
            let hint = match suggest(bare) {
                Some(known) => format!(" (did you mean {known}?)"),
                None => String::new(),
            };
            Err(args.usage(
                topic.offset,
                format!("no command named \"{}\"{hint}", topic.text),
            ))
        }
    }
}

fn parse_who(args: &Args<'_>) -> Result<Command, ParseError> {
    let (json, positionals) = args.json_and_positionals(args.words()?)?;
    args.no_more(&positionals)?;
    Ok(Command::Who { json })
}

fn parse_peers(args: &Args<'_>) -> Result<Command, ParseError> {
    let (json, positionals) = args.json_and_positionals(args.words()?)?;
    args.no_more(&positionals)?;
    Ok(Command::Peers { json })
}

fn parse_whois(args: &Args<'_>) -> Result<Command, ParseError> {
    let (json, positionals) = args.json_and_positionals(args.words()?)?;
    let Some((who, extra)) = positionals.split_first() else {
        return Err(args.usage(args.end(), "missing user, like @alice@rose.example"));
    };
    args.no_more(extra)?;
    let user = user_address(args, who)?;
    Ok(Command::Whois { user, json })
}

/// A word that must be a user's address (`@nick@domain`, `nick@domain`, `@nick`, `nick`).
fn user_address(args: &Args<'_>, word: &Word) -> Result<Address, ParseError> {
    Address::parse(&word.text).map_err(|_| {
        args.usage(
            word.offset,
            format!(
                "\"{}\" is not a user address like @alice@rose.example",
                word.text
            ),
        )
    })
}

/// `/bio` alone shows it, `/bio --clear` clears it; any other text is the new bio, as typed.
/// A lone word that looks like an option (`--json`) is refused rather than taken as a bio.
fn parse_bio(args: &Args<'_>) -> Result<Command, ParseError> {
    let (text, offset) = args.text();
    if text.is_empty() {
        return Ok(Command::Bio(BioCommand::Show));
    }
    if text == "--clear" {
        return Ok(Command::Bio(BioCommand::Clear));
    }
    if text.starts_with("--") && !text.contains(char::is_whitespace) {
        return Err(args.usage(
            offset,
            format!("unknown option \"{text}\" (/bio --clear removes your bio)"),
        ));
    }
    Ok(Command::Bio(BioCommand::Set {
        text: text.to_owned(),
    }))
}

fn parse_say(args: &Args<'_>) -> Result<Command, ParseError> {
    Ok(Command::Say {
        text: args.required_text("text")?,
    })
}

fn parse_me(args: &Args<'_>) -> Result<Command, ParseError> {
    Ok(Command::Me {
        action: args.required_text("action")?,
    })
}

fn parse_history(args: &Args<'_>) -> Result<Command, ParseError> {
    let (json, positionals) = args.json_and_positionals(args.words()?)?;
    let (count, extra) = match positionals.split_first() {
        Some((count, extra)) => (Some(count), extra),
        None => (None, &[][..]),
    };
    args.no_more(extra)?;
    let count = match count {
        None => None,
        Some(word) => match word.text.parse::<usize>() {
            Ok(0) => return Err(args.usage(word.offset, "the count must be at least 1")),
            Ok(n) => Some(n),
            Err(_) => {
                return Err(args.usage(word.offset, format!("\"{}\" is not a number", word.text)))
            }
        },
    };
    Ok(Command::History { count, json })
}

/// `[--sealed] ADDRESS [TEXT]`: the address is the first word, the text the rest as typed.
fn parse_msg(args: &Args<'_>) -> Result<Command, ParseError> {
    let (text, offset) = args.text();
    let mut rest = text;
    let mut sealed = false;
    if let Some(after) = rest.strip_prefix("--sealed") {
        if after.is_empty() || after.starts_with(char::is_whitespace) {
            sealed = true;
            rest = after.trim_start();
        }
    }
    let at = offset + (text.len() - rest.len());
    let (who, body) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if who.is_empty() {
        return Err(args.usage(args.end(), "missing recipient, like @bob@rose.example"));
    }
    if who.starts_with("--") {
        return Err(args.usage(at, format!("unknown option \"{who}\"")));
    }
    let to = user_address(
        args,
        &Word {
            text: who.to_owned(),
            offset: at,
            quoted: false,
        },
    )?;
    let body = body.trim();
    if sealed && !body.is_empty() {
        return Err(args.usage(
            at + who.len(),
            "--sealed reads the age armor from stdin, not from the line",
        ));
    }
    Ok(Command::Msg {
        to,
        text: (!body.is_empty()).then(|| body.to_owned()),
        sealed,
    })
}

fn parse_msgs(args: &Args<'_>) -> Result<Command, ParseError> {
    let mut json = false;
    let mut raw: Option<i64> = None;
    let mut positionals = Vec::new();
    let mut words = args.words()?.into_iter();
    while let Some(word) = words.next() {
        match word.text.as_str() {
            "--json" if !word.quoted => json = true,
            "--raw" if !word.quoted => {
                let Some(id) = words.next() else {
                    return Err(args.usage(args.end(), "--raw needs a message id"));
                };
                match id.text.parse::<i64>() {
                    Ok(n) if n >= 1 => raw = Some(n),
                    _ => {
                        return Err(
                            args.usage(id.offset, format!("\"{}\" is not a message id", id.text))
                        )
                    }
                }
            }
            _ if word.is_flag() => {
                return Err(args.usage(word.offset, format!("unknown option \"{}\"", word.text)))
            }
            _ => positionals.push(word),
        }
    }
    if let Some(id) = raw {
        args.no_more(&positionals)?;
        if json {
            return Err(args.usage(args.end(), "--raw prints the text as it is; drop --json"));
        }
        return Ok(Command::Msgs(MsgsCommand::Raw { id }));
    }
    let Some((who, rest)) = positionals.split_first() else {
        return Ok(Command::Msgs(MsgsCommand::List { json }));
    };
    let with = user_address(args, who)?;
    let (count, extra) = match rest.split_first() {
        Some((n, extra)) => match n.text.parse::<usize>() {
            Ok(n) if n >= 1 => (Some(n), extra),
            _ => {
                return Err(args.usage(n.offset, format!("\"{}\" is not a count", n.text)));
            }
        },
        None => (None, rest),
    };
    args.no_more(extra)?;
    Ok(Command::Msgs(MsgsCommand::Show { with, count, json }))
}

fn parse_transfers(args: &Args<'_>) -> Result<Command, ParseError> {
    args.no_more(&args.words()?)?;
    Ok(Command::Transfers)
}

fn parse_cancel(args: &Args<'_>) -> Result<Command, ParseError> {
    let words = args.words()?;
    let Some((n, extra)) = words.split_first() else {
        return Err(args.usage(args.end(), "missing transfer number (see /transfers)"));
    };
    args.no_more(extra)?;
    match n.text.parse::<u64>() {
        Ok(id) if id >= 1 => Ok(Command::Cancel { id }),
        _ => Err(args.usage(n.offset, format!("\"{}\" is not a transfer number", n.text))),
    }
}

fn parse_reply(args: &Args<'_>) -> Result<Command, ParseError> {
    Ok(Command::Reply {
        text: args.required_text("text")?,
    })
}

fn parse_ignore(args: &Args<'_>) -> Result<Command, ParseError> {
    let words = args.words()?;
    match words.split_first() {
        None => Ok(Command::Ignore { user: None }),
        Some((who, extra)) => {
            args.no_more(extra)?;
            Ok(Command::Ignore {
                user: Some(user_address(args, who)?),
            })
        }
    }
}

fn parse_unignore(args: &Args<'_>) -> Result<Command, ParseError> {
    let words = args.words()?;
    let Some((who, extra)) = words.split_first() else {
        return Err(args.usage(args.end(), "missing user, like @bob@rose.example"));
    };
    args.no_more(extra)?;
    Ok(Command::Unignore {
        user: user_address(args, who)?,
    })
}

fn parse_keys(args: &Args<'_>) -> Result<Command, ParseError> {
    let (text, _) = args.text();
    let (subcommand, after) = match text.split_once(char::is_whitespace) {
        Some((head, tail)) => (head, tail),
        None => (text, ""),
    };
    match subcommand {
        "add" => {
            let key = after.trim();
            if key.is_empty() {
                return Err(args.usage(args.end(), "missing key (paste the whole public key line)"));
            }
            Ok(Command::Keys(KeysCommand::Add {
                key: key.to_owned(),
            }))
        }
        "remove" => {
            let words = args.words()?;
            match words.get(1..) {
                Some([fingerprint]) => Ok(Command::Keys(KeysCommand::Remove {
                    fingerprint: fingerprint.text.clone(),
                })),
                Some([]) | None => Err(args.usage(args.end(), "missing fingerprint")),
                Some([_, extra, ..]) => Err(args.usage(
                    extra.offset,
                    format!("unexpected argument \"{}\"", extra.text),
                )),
            }
        }
        _ => {
            let (json, positionals) = args.json_and_positionals(args.words()?)?;
            match positionals.first() {
                Some(word) if word.text.starts_with('@') => {
                    args.no_more(&positionals[1..])?;
                    if json {
                        return Err(args.usage(
                            word.offset,
                            "--json is for your own keys; a user's keys are authorized_keys lines",
                        ));
                    }
                    Ok(Command::Keys(KeysCommand::Of {
                        user: user_address(args, word)?,
                    }))
                }
                Some(word) => Err(args.usage(
                    word.offset,
                    format!("unknown subcommand \"{}\" (try add or remove)", word.text),
                )),
                None => Ok(Command::Keys(KeysCommand::List { json })),
            }
        }
    }
}

fn parse_library(args: &Args<'_>) -> Result<Command, ParseError> {
    let (json, page, positionals) = args.listing_flags(args.words()?)?;
    args.no_more(&positionals)?;
    Ok(Command::Library { json, page })
}

/// A file name or glob: one (possibly quoted) word, or else the rest of the line as typed,
/// so names with spaces work without quotes.
fn pattern(args: &Args<'_>) -> Result<String, ParseError> {
    let words = args.words()?;
    match words.as_slice() {
        [] => Err(args.usage(args.end(), "missing file name or pattern")),
        [one] => Ok(one.text.clone()),
        _ => Ok(args.text().0.to_owned()),
    }
}

fn parse_share(args: &Args<'_>) -> Result<Command, ParseError> {
    Ok(Command::Share {
        pattern: pattern(args)?,
    })
}

fn parse_unshare(args: &Args<'_>) -> Result<Command, ParseError> {
    Ok(Command::Unshare {
        pattern: pattern(args)?,
    })
}

fn parse_search(args: &Args<'_>) -> Result<Command, ParseError> {
    let (text, text_offset) = args.text();
    // Take out the flags, blanking them so the query keeps its offsets.
    let mut query_text = text.to_owned();
    let (mut json, mut page) = (false, 1);
    let words = args.words()?;
    let mut iter = words.iter().peekable();
    while let Some(word) = iter.next() {
        if !word.is_flag() {
            continue;
        }
        let blank = |q: &mut String, w: &Word| {
            let start = w.offset - text_offset;
            let end = (start + w.text.len()).min(q.len());
            q.replace_range(start..end, &" ".repeat(end - start));
        };
        match word.text.as_str() {
            "--json" => json = true,
            "--page" => {
                let n = iter.next();
                page = args.page_number(n)?;
                if let Some(n) = n {
                    blank(&mut query_text, n);
                }
            }
            other => return Err(args.usage(word.offset, format!("unknown option \"{other}\""))),
        }
        blank(&mut query_text, word);
    }
    let query =
        parse_query(&query_text).map_err(|e| args.usage(text_offset + e.offset, e.to_string()))?;
    Ok(Command::Search { query, json, page })
}

fn parse_more(args: &Args<'_>) -> Result<Command, ParseError> {
    let (json, positionals) = args.json_and_positionals(args.words()?)?;
    args.no_more(&positionals)?;
    Ok(Command::More { json })
}

fn parse_browse(args: &Args<'_>) -> Result<Command, ParseError> {
    let (json, page, positionals) = args.listing_flags(args.words()?)?;
    let Some((who, extra)) = positionals.split_first() else {
        return Err(args.usage(args.end(), "missing user, like @alice@rose.example"));
    };
    args.no_more(extra)?;
    let user = user_address(args, who)?;
    Ok(Command::Browse { user, json, page })
}

fn parse_get(args: &Args<'_>) -> Result<Command, ParseError> {
    let mut offset = 0;
    let mut positionals = Vec::new();
    let mut words = args.words()?.into_iter();
    while let Some(word) = words.next() {
        match word.text.as_str() {
            "--offset" => {
                let Some(n) = words.next() else {
                    return Err(args.usage(args.end(), "--offset needs a number of bytes"));
                };
                offset = n.text.parse::<u64>().map_err(|_| {
                    args.usage(n.offset, format!("\"{}\" is not a number of bytes", n.text))
                })?;
            }
            _ if word.is_flag() => {
                return Err(args.usage(word.offset, format!("unknown option \"{}\"", word.text)))
            }
            _ => positionals.push(word),
        }
    }
    let Some((target, extra)) = positionals.split_first() else {
        return Err(args.usage(args.end(), "missing id or result number"));
    };
    args.no_more(extra)?;
    let text = target.text.to_ascii_lowercase();
    let is_hex = !text.is_empty() && text.chars().all(|c| c.is_ascii_hexdigit());
    if is_hex && (MIN_ID_PREFIX..=ID_LEN).contains(&text.len()) {
        return Ok(Command::Get {
            target: GetTarget::Id(text),
            offset,
        });
    }
    if let Ok(n) = text.parse::<usize>() {
        if n >= 1 && text.len() < MIN_ID_PREFIX {
            return Ok(Command::Get {
                target: GetTarget::Number(n),
                offset,
            });
        }
    }
    Err(args.usage(
        target.offset,
        format!(
            "\"{}\" is neither a result number nor an id ({MIN_ID_PREFIX} to {ID_LEN} hex digits)",
            target.text
        ),
    ))
}

fn parse_quit(args: &Args<'_>) -> Result<Command, ParseError> {
    args.no_more(&args.words()?)?;
    Ok(Command::Quit)
}

#[cfg(test)]
mod tests {
    #[test]
    fn exec_wording_drops_the_slash_of_command_names_only() {
        assert_eq!(
            exec_wording("/history: 0 is out of range; usage: /history [N] [--json]"),
            "history: 0 is out of range; usage: history [N] [--json]"
        );
        assert_eq!(
            exec_wording("no results; /search first, or /get ID (see `/help`)"),
            "no results; search first, or get ID (see `help`)"
        );
        for unchanged in ["library/get.txt", "unknown command \"/nosuch\"", "a /", "/"] {
            assert_eq!(exec_wording(unchanged), unchanged);
        }
        assert_eq!(exec_wording("é /who"), "é who");
    }

    use super::*;

    /// What a case expects: a parsed line, or an error kind (abbreviated) at an offset.
    #[derive(Debug)]
    enum Want {
        Ok(Line),
        Unknown(&'static str, Option<&'static str>, usize),
        Usage(&'static str, usize),
        Quote(usize),
        TooLong,
    }

    fn cmd(command: Command) -> Want {
        Want::Ok(Line::Command(command))
    }

    fn chat(text: &str) -> Want {
        Want::Ok(Line::Chat(text.to_owned()))
    }

    fn matches(got: &Result<Line, ParseError>, want: &Want) -> bool {
        match (got, want) {
            (Ok(line), Want::Ok(expected)) => line == expected,
            (Err(e), Want::Unknown(name, suggestion, offset)) => {
                e.kind
                    == ParseErrorKind::UnknownCommand {
                        name: (*name).to_owned(),
                        suggestion: *suggestion,
                    }
                    && e.offset == *offset
            }
            (Err(e), Want::Usage(command, offset)) => {
                matches!(&e.kind, ParseErrorKind::Usage { command: c, .. } if c == command)
                    && e.offset == *offset
            }
            (Err(e), Want::Quote(offset)) => {
                e.kind == ParseErrorKind::UnterminatedQuote && e.offset == *offset
            }
            (Err(e), Want::TooLong) => matches!(e.kind, ParseErrorKind::TooLong { .. }),
            _ => false,
        }
    }

    fn check(input: &str, want: Want) {
        let got = parse_shell_line(input);
        assert!(
            matches(&got, &want),
            "input {input:?}\n  got  {got:?}\n  want {want:?}"
        );
    }

    fn check_exec(input: &str, want: Want) {
        let got = parse_exec(input).map(Line::Command);
        assert!(
            matches(&got, &want),
            "exec {input:?}\n  got  {got:?}\n  want {want:?}"
        );
    }

    #[test]
    fn private_message_commands() {
        use Command::*;
        let bob = || Address::parse("@bob@b.example").unwrap();
        check(
            "/msg @bob@b.example  hi there, \"you\" ",
            cmd(Msg {
                to: bob(),
                text: Some("hi there, \"you\"".to_owned()),
                sealed: false,
            }),
        );
        check(
            "/msg carol x",
            cmd(Msg {
                to: Address::parse("carol").unwrap(),
                text: Some("x".to_owned()),
                sealed: false,
            }),
        );
        check_exec(
            "msg --sealed @bob@b.example",
            cmd(Msg {
                to: bob(),
                text: None,
                sealed: true,
            }),
        );
        check_exec(
            "msg @bob@b.example",
            cmd(Msg {
                to: bob(),
                text: None,
                sealed: false,
            }),
        );
        check("/msg", Want::Usage("msg", 4));
        check("/msg --loud @bob@b.example x", Want::Usage("msg", 5));
        check("/msg @@ x", Want::Usage("msg", 5));
        check("/msg --sealed @bob@b.example text", Want::Usage("msg", 28));
        check("/msgs", cmd(Msgs(MsgsCommand::List { json: false })));
        check("/msgs --json", cmd(Msgs(MsgsCommand::List { json: true })));
        check(
            "/msgs @bob@b.example 5 --json",
            cmd(Msgs(MsgsCommand::Show {
                with: bob(),
                count: Some(5),
                json: true,
            })),
        );
        check_exec("msgs --raw 12", cmd(Msgs(MsgsCommand::Raw { id: 12 })));
        check("/msgs --raw x", Want::Usage("msgs", 12));
        check("/msgs --raw", Want::Usage("msgs", 11));
        check("/msgs @bob@b.example 0", Want::Usage("msgs", 21));
        check("/msgs --raw 3 --json", Want::Usage("msgs", 20));
        check(
            "/reply  ok, see you ",
            cmd(Reply {
                text: "ok, see you".to_owned(),
            }),
        );
        check("/reply", Want::Usage("reply", 6));
        check("/ignore", cmd(Ignore { user: None }));
        check("/ignore @bob@b.example", cmd(Ignore { user: Some(bob()) }));
        check("/ignore a b", Want::Usage("ignore", 10));
        check("/unignore @bob@b.example", cmd(Unignore { user: bob() }));
        check("/unignore", Want::Usage("unignore", 9));
        check("/transfers", cmd(Transfers));
        check("/transfers x", Want::Usage("transfers", 11));
        check("/cancel 3", cmd(Cancel { id: 3 }));
        check("/cancel", Want::Usage("cancel", 7));
        check("/cancel 0", Want::Usage("cancel", 8));
        assert!(parse_exec("msgs --json").unwrap().json());
        assert!(!parse_exec("msgs --raw 1").unwrap().json());
    }

    #[test]
    fn shell_lines() {
        use Command::*;
        check("", Want::Ok(Line::Empty));
        check("   \t ", Want::Ok(Line::Empty));
        check("hello", chat("hello"));
        check("  hello there  ", chat("hello there"));
        check("//etc/passwd is a file", chat("/etc/passwd is a file"));
        check("it's \"quoted\"", chat("it's \"quoted\""));
        check("/help", cmd(Help { topic: None }));
        check(
            "/help who",
            cmd(Help {
                topic: Some("who".into()),
            }),
        );
        check(
            "/help /history",
            cmd(Help {
                topic: Some("history".into()),
            }),
        );
        check(
            "/help exit",
            cmd(Help {
                topic: Some("quit".into()),
            }),
        );
        check("/help whoo", Want::Usage("help", 6));
        check("/help who me", Want::Usage("help", 10));
        check("/who", cmd(Who { json: false }));
        check("  /who  ", cmd(Who { json: false }));
        check("/WHO", cmd(Who { json: false }));
        check("/who --json", cmd(Who { json: true }));
        check("/peers", cmd(Peers { json: false }));
        check("/peers --json", cmd(Peers { json: true }));
        check("/peers x", Want::Usage("peers", 7));
        check("/who \"--json\"", Want::Usage("who", 5));
        check("/who --xml", Want::Usage("who", 5));
        check("/who everyone", Want::Usage("who", 5));
        check(
            "/say hello world",
            cmd(Say {
                text: "hello world".into(),
            }),
        );
        check(
            "/say it's fine",
            cmd(Say {
                text: "it's fine".into(),
            }),
        );
        check(
            "/say   /slash  ",
            cmd(Say {
                text: "/slash".into(),
            }),
        );
        check("/say", Want::Usage("say", 4));
        check("/say   ", Want::Usage("say", 4));
        check(
            "/me waves",
            cmd(Me {
                action: "waves".into(),
            }),
        );
        check("/me", Want::Usage("me", 3));
        check(
            "/history",
            cmd(History {
                count: None,
                json: false,
            }),
        );
        check(
            "/history 20",
            cmd(History {
                count: Some(20),
                json: false,
            }),
        );
        check(
            "/history 20 --json",
            cmd(History {
                count: Some(20),
                json: true,
            }),
        );
        check(
            "/history --json 5",
            cmd(History {
                count: Some(5),
                json: true,
            }),
        );
        check(
            "/history \"7\"",
            cmd(History {
                count: Some(7),
                json: false,
            }),
        );
        check("/history abc", Want::Usage("history", 9));
        check("/history 0", Want::Usage("history", 9));
        check("/history -3", Want::Usage("history", 9));
        check("/history 1 2", Want::Usage("history", 11));
        check(
            "/history 99999999999999999999999",
            Want::Usage("history", 9),
        );
        check("/keys", cmd(Keys(KeysCommand::List { json: false })));
        check("/keys --json", cmd(Keys(KeysCommand::List { json: true })));
        check(
            "/keys @bob@rose.example",
            cmd(Keys(KeysCommand::Of {
                user: Address::parse("@bob@rose.example").unwrap(),
            })),
        );
        check(
            "/keys @bob",
            cmd(Keys(KeysCommand::Of {
                user: Address::parse("@bob").unwrap(),
            })),
        );
        check(
            "/keys add ssh-ed25519 AAAAC3Nz alice@laptop",
            cmd(Keys(KeysCommand::Add {
                key: "ssh-ed25519 AAAAC3Nz alice@laptop".into(),
            })),
        );
        check("/keys add", Want::Usage("keys", 9));
        check(
            "/keys remove SHA256:abc",
            cmd(Keys(KeysCommand::Remove {
                fingerprint: "SHA256:abc".into(),
            })),
        );
        check("/keys remove", Want::Usage("keys", 12));
        check("/keys remove a b", Want::Usage("keys", 15));
        check("/keys frob", Want::Usage("keys", 6));
        check("/quit", cmd(Quit));
        check("/exit", cmd(Quit));
        check("/quit now", Want::Usage("quit", 6));
    }

    #[test]
    fn unknown_commands_suggest_the_closest() {
        check("/whoo", Want::Unknown("/whoo", Some("who"), 0));
        check("  /hlep", Want::Unknown("/hlep", Some("help"), 2));
        check("/hist 5", Want::Unknown("/hist", Some("history"), 0));
        check("/exti", Want::Unknown("/exti", Some("exit"), 0));
        check("/xyzzy", Want::Unknown("/xyzzy", None, 0));
        check("/", Want::Unknown("/", None, 0));
        check("/ who", Want::Unknown("/", None, 0));
    }

    #[test]
    fn quoted_arguments() {
        use Command::*;
        check(
            "/help \"who\"",
            cmd(Help {
                topic: Some("who".into()),
            }),
        );
        check(
            "/help 'who'",
            cmd(Help {
                topic: Some("who".into()),
            }),
        );
        check(
            "/keys remove \"a b\"",
            cmd(Keys(KeysCommand::Remove {
                fingerprint: "a b".into(),
            })),
        );
        check(
            "/keys remove 'a \"b'",
            cmd(Keys(KeysCommand::Remove {
                fingerprint: "a \"b".into(),
            })),
        );
        check(
            "/keys remove \"a \\\"b\\\\\"",
            cmd(Keys(KeysCommand::Remove {
                fingerprint: "a \"b\\".into(),
            })),
        );
        check(
            "/keys remove \"\"",
            cmd(Keys(KeysCommand::Remove {
                fingerprint: String::new(),
            })),
        );
        check("/keys remove \"abc", Want::Quote(13));
        check("/keys remove 'abc", Want::Quote(13));
        check("/keys remove \"abc\\\"", Want::Quote(13));
        check("/who \"", Want::Quote(5));
    }

    #[test]
    fn exec_form() {
        use Command::*;
        check_exec("who", cmd(Who { json: false }));
        check_exec("who --json", cmd(Who { json: true }));
        check_exec("/who --json", cmd(Who { json: true }));
        check_exec(
            "history 3 --json",
            cmd(History {
                count: Some(3),
                json: true,
            }),
        );
        check_exec(
            "say hello",
            cmd(Say {
                text: "hello".into(),
            }),
        );
        check_exec(
            "keys add ssh-ed25519 AAAA",
            cmd(Keys(KeysCommand::Add {
                key: "ssh-ed25519 AAAA".into(),
            })),
        );
        check_exec("exit", cmd(Quit));
        check_exec("whoo", Want::Unknown("whoo", Some("who"), 0));
        check_exec("xyzzy plugh", Want::Unknown("xyzzy", None, 0));
        check_exec("", Want::Unknown("", None, 0));
        check_exec("history x", Want::Usage("history", 8));
    }

    #[test]
    fn library_commands() {
        use crate::address::Address;
        use crate::query::Query;
        use Command::*;
        let words = |w: &[&str]| Query {
            words: w.iter().map(|s| s.to_string()).collect(),
            ..Query::default()
        };
        check(
            "/library",
            cmd(Library {
                json: false,
                page: 1,
            }),
        );
        check(
            "/lib --json",
            cmd(Library {
                json: true,
                page: 1,
            }),
        );
        check(
            "/library --page 3 --json",
            cmd(Library {
                json: true,
                page: 3,
            }),
        );
        check("/library --page 0", Want::Usage("library", 16));
        check("/library --page", Want::Usage("library", 15));
        check("/library x", Want::Usage("library", 9));
        check(
            "/share *.flac",
            cmd(Share {
                pattern: "*.flac".into(),
            }),
        );
        check(
            "/share my song.flac",
            cmd(Share {
                pattern: "my song.flac".into(),
            }),
        );
        check(
            "/share \"a  b.txt\"",
            cmd(Share {
                pattern: "a  b.txt".into(),
            }),
        );
        check(
            "/unshare x",
            cmd(Unshare {
                pattern: "x".into(),
            }),
        );
        check("/share", Want::Usage("share", 6));
        check(
            "/search miles davis",
            cmd(Search {
                query: words(&["miles", "davis"]),
                json: false,
                page: 1,
            }),
        );
        check(
            "/search --json flac --page 2",
            cmd(Search {
                query: words(&["flac"]),
                json: true,
                page: 2,
            }),
        );
        check("/search flac --page x", Want::Usage("search", 20));
        check("/search flac size:>huge", Want::Usage("search", 13));
        check("/search", Want::Usage("search", 7));
        check("/more", cmd(More { json: false }));
        check(
            "/browse @bob@rose.example --json",
            cmd(Browse {
                user: Address {
                    nick: "bob".into(),
                    domain: Some("rose.example".into()),
                },
                json: true,
                page: 1,
            }),
        );
        check(
            "/browse bob --page 2",
            cmd(Browse {
                user: Address {
                    nick: "bob".into(),
                    domain: None,
                },
                json: false,
                page: 2,
            }),
        );
        check("/browse bob --page two", Want::Usage("browse", 19));
        check(
            "/browse bob",
            cmd(Browse {
                user: Address {
                    nick: "bob".into(),
                    domain: None,
                },
                json: false,
                page: 1,
            }),
        );
        check("/browse @", Want::Usage("browse", 8));
        check(
            "/get 3",
            cmd(Get {
                target: GetTarget::Number(3),
                offset: 0,
            }),
        );
        check(
            "/get DEADBEEF",
            cmd(Get {
                target: GetTarget::Id("deadbeef".into()),
                offset: 0,
            }),
        );
        check(
            "/get 12345678",
            cmd(Get {
                target: GetTarget::Id("12345678".into()),
                offset: 0,
            }),
        );
        check(
            "/get 12345678 --offset 16384",
            cmd(Get {
                target: GetTarget::Id("12345678".into()),
                offset: 16384,
            }),
        );
        check(
            "/get --offset 7 2",
            cmd(Get {
                target: GetTarget::Number(2),
                offset: 7,
            }),
        );
        check("/get 12345678 --offset", Want::Usage("get", 22));
        check("/get 12345678 --offset -1", Want::Usage("get", 23));
        check("/get 12345678 --from 1", Want::Usage("get", 14));
        check("/get abc", Want::Usage("get", 5));
        check("/get 0", Want::Usage("get", 5));
        check(&format!("/get {}", "a".repeat(65)), Want::Usage("get", 5));
        check_exec(
            "search \"kind of blue\" --json",
            cmd(Search {
                query: Query {
                    phrases: vec!["kind of blue".into()],
                    ..Query::default()
                },
                json: true,
                page: 1,
            }),
        );
    }

    #[test]
    fn profile_commands() {
        use Command::*;
        let alice_at = |domain: Option<&str>| Address {
            nick: "alice".into(),
            domain: domain.map(str::to_owned),
        };
        check(
            "/whois @alice@rose.example",
            cmd(Whois {
                user: alice_at(Some("rose.example")),
                json: false,
            }),
        );
        check(
            "/whois alice --json",
            cmd(Whois {
                user: alice_at(None),
                json: true,
            }),
        );
        check_exec(
            "whois --json @alice",
            cmd(Whois {
                user: alice_at(None),
                json: true,
            }),
        );
        check("/whois", Want::Usage("whois", 6));
        check("/whois @", Want::Usage("whois", 7));
        check("/whois alice bob", Want::Usage("whois", 13));
        check("/whois alice --page 2", Want::Usage("whois", 13));
        check("/bio", cmd(Bio(BioCommand::Show)));
        check("/bio   ", cmd(Bio(BioCommand::Show)));
        check("/bio --clear", cmd(Bio(BioCommand::Clear)));
        check(
            "/bio  I play \"bass\"  ",
            cmd(Bio(BioCommand::Set {
                text: "I play \"bass\"".into(),
            })),
        );
        check(
            "/bio --clear the decks",
            cmd(Bio(BioCommand::Set {
                text: "--clear the decks".into(),
            })),
        );
        check("/bio --json", Want::Usage("bio", 5));
        check_exec(
            "bio hello there",
            cmd(Bio(BioCommand::Set {
                text: "hello there".into(),
            })),
        );
    }

    #[test]
    fn too_long_lines() {
        check(
            &"a".repeat(MAX_LINE_BYTES),
            chat(&"a".repeat(MAX_LINE_BYTES)),
        );
        check(&"a".repeat(MAX_LINE_BYTES + 1), Want::TooLong);
        check_exec(
            &format!("say {}", "a".repeat(MAX_LINE_BYTES)),
            Want::TooLong,
        );
    }

    fn check_message(input: &str, expected: &str) {
        let message = match parse_shell_line(input) {
            Err(e) => e.to_string(),
            Ok(line) => panic!("{input:?} parsed as {line:?}"),
        };
        assert_eq!(message, expected, "input {input:?}");
    }

    #[test]
    fn error_messages() {
        check_message("/whoo", "unknown command \"/whoo\"; did you mean /who?");
        check_message("/xyzzy", "unknown command \"/xyzzy\"; try /help");
        check_message("/", "missing command name; try /help");
        check_message(
            "/history abc",
            "/history: \"abc\" is not a number; usage: /history [N] [--json]",
        );
        check_message(
            "/who --xml",
            "/who: unknown option \"--xml\"; usage: /who [--json]",
        );
        check_message("/say", "/say: missing text; usage: /say TEXT");
        check_message(
            "/help whoo",
            "/help: no command named \"whoo\" (did you mean who?); usage: /help [CMD]",
        );
        check_message("/keys remove \"x", "unterminated quote at byte 13");
        check_message(
            &"x".repeat(2000),
            "line too long: 2000 bytes (the limit is 1024)",
        );
        let exec = parse_exec("whoo").map_err(|e| e.to_string());
        assert_eq!(
            exec,
            Err("unknown command \"whoo\"; did you mean who?".to_owned())
        );
    }

    #[test]
    fn every_command_is_reachable_and_documented() {
        for spec in COMMANDS {
            assert!(command_spec(spec.name).is_some());
            assert!(command_spec(&format!("/{}", spec.name)).is_some());
            assert!(
                spec.usage.starts_with(&format!("/{}", spec.name)),
                "{}",
                spec.name
            );
            assert!(!spec.summary.is_empty() && !spec.help.is_empty());
        }
        assert!(command_spec("nope").is_none());
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("who", "who"), 0);
        assert_eq!(edit_distance("whoo", "who"), 1);
        assert_eq!(edit_distance("hlep", "help"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn json_is_known_for_every_command_that_takes_it() {
        for line in [
            "who --json",
            "history 3 --json",
            "library --json",
            "search x --json",
            "more --json",
            "browse @bob@b.example --json",
            "keys --json",
            "whois @bob@b.example --json",
        ] {
            assert_eq!(parse_exec(line).map(|c| c.json()), Ok(true), "{line}");
        }
        for line in [
            "who",
            "search x",
            "say --json",
            "get 1",
            "help",
            "bio",
            "whois bob",
        ] {
            assert_eq!(parse_exec(line).map(|c| c.json()), Ok(false), "{line}");
        }
    }
}
