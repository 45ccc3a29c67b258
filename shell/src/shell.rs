//! [`Shell`]: the interactive shell of one session, as a sans-IO core.
//!
//! The server feeds it the raw bytes the client's terminal sends ([`Shell::handle_input`]),
//! the messages to show ([`Shell::push`]) and size changes ([`Shell::resize`]); it answers
//! with [`Action`]s (a submitted line, quit) and with bytes to write back
//! ([`Shell::render`]). No sockets, no clock, no threads: tests drive it with byte strings.
//!
//! Input goes through three stages: a UTF-8 guard (an incomplete character waits for the
//! next chunk, invalid bytes are dropped), the [`KeyDecoder`] (keys, escape sequences and
//! bracketed paste, kept across calls so a sequence split between two reads still decodes),
//! and the [`Editor`]. PgUp and PgDn page the message area; Enter brings it back to the
//! newest messages.

use std::sync::Arc;

use termwiz::input::{InputEvent, KeyCode};

use crate::editor::{Editor, EditorEvent};
use crate::keys::KeyDecoder;
use crate::message::Message;
use crate::sanitize::{is_unsafe_char, sanitize};
use crate::screen::Screen;
pub use crate::screen::Status;

/// Bytes the input parser may hold without producing an event (an unterminated bracketed
/// paste) before they are dropped; the rest of that paste is then skipped.
pub const MAX_PENDING_INPUT: usize = 64 * 1024;

/// Completion candidates shown at most in the status line after Tab.
pub const MAX_CANDIDATES_SHOWN: usize = 20;

/// The end of a bracketed paste.
const PASTE_END: &[u8] = b"\x1b[201~";

/// How a session starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellConfig {
    /// The client's TERM (from the pty request).
    pub term: String,
    /// Terminal width in columns.
    pub cols: u16,
    /// Terminal height in rows.
    pub rows: u16,
    /// The user's nickname, shown in the status line.
    pub nick: String,
    /// The status line's instance name and online count.
    pub status: Status,
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The line the user pressed Enter on (never blank; parse it with
    /// [`parse_shell_line`](crate::parse_shell_line)).
    Submit(String),
    /// Ctrl-D on an empty line.
    Quit,
}

/// The interactive shell of one session.
pub struct Shell {
    /// Decodes keys and pastes; holds an unfinished escape sequence between calls.
    parser: KeyDecoder,
    /// The start of a UTF-8 character cut off at the end of the last chunk.
    utf8_tail: Vec<u8>,
    /// While skipping an oversized paste: how much of [`PASTE_END`] has been matched.
    skipping_paste: Option<usize>,
    /// The input line.
    editor: Editor,
    /// The screen model and renderer.
    screen: Screen,
    /// Nicknames offered by completion after `@`.
    nicks: Vec<String>,
}

impl Shell {
    /// A shell for a new session; the first [`render`](Shell::render) draws the screen.
    pub fn new(config: ShellConfig) -> Shell {
        Shell {
            parser: KeyDecoder::new(),
            utf8_tail: Vec::new(),
            skipping_paste: None,
            editor: Editor::new(),
            screen: Screen::new(
                &config.term,
                config.cols,
                config.rows,
                &config.nick,
                config.status,
            ),
            nicks: Vec::new(),
        }
    }

    /// Feed raw bytes from the client's terminal (keys, escape sequences, bracketed paste).
    pub fn handle_input(&mut self, bytes: &[u8]) -> Vec<Action> {
        let bytes = self.skip_oversized_paste(bytes);
        let text = self.complete_utf8(bytes);
        let mut events = Vec::new();
        self.parser.parse(&text, |event| events.push(event));
        if self.parser.pending_len() > MAX_PENDING_INPUT {
            self.parser = KeyDecoder::new();
            self.skipping_paste = Some(0);
        }
        let mut actions = Vec::new();
        for event in events {
            self.apply(event, &mut actions);
        }
        actions
    }

    /// While skipping an oversized paste, drops bytes up to and including its end marker.
    fn skip_oversized_paste<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let Some(mut matched) = self.skipping_paste else {
            return bytes;
        };
        for (i, byte) in bytes.iter().enumerate() {
            matched = if PASTE_END.get(matched) == Some(byte) {
                matched + 1
            } else {
                usize::from(*byte == PASTE_END[0])
            };
            if matched == PASTE_END.len() {
                self.skipping_paste = None;
                return &bytes[i + 1..];
            }
        }
        self.skipping_paste = Some(matched);
        &[]
    }

    /// Valid UTF-8 from `bytes` and any cut-off character from before; invalid bytes are
    /// dropped, an incomplete character at the end waits for the next call.
    fn complete_utf8(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.utf8_tail);
        data.extend_from_slice(bytes);
        let mut valid = Vec::with_capacity(data.len());
        let mut rest = data.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    valid.extend_from_slice(text.as_bytes());
                    break;
                }
                Err(error) => {
                    let (good, bad) = rest.split_at(error.valid_up_to());
                    valid.extend_from_slice(good);
                    match error.error_len() {
                        Some(len) => rest = bad.get(len..).unwrap_or_default(),
                        None => {
                            self.utf8_tail = bad.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        valid
    }

    fn apply(&mut self, event: InputEvent, actions: &mut Vec<Action>) {
        match event {
            InputEvent::Key(key) => {
                if matches!(
                    key.key,
                    KeyCode::InternalPasteStart | KeyCode::InternalPasteEnd
                ) {
                    return;
                }
                self.screen.set_hint(None);
                match key.key {
                    KeyCode::PageUp => return self.screen.page_up(),
                    KeyCode::PageDown => return self.screen.page_down(),
                    _ => {}
                }
                match self.editor.handle_key(&key, &self.nicks) {
                    EditorEvent::None => {}
                    EditorEvent::Submit(line) => {
                        // What the line produces shows at the bottom.
                        self.screen.scroll_to_bottom();
                        actions.push(Action::Submit(line));
                    }
                    EditorEvent::Quit => actions.push(Action::Quit),
                    EditorEvent::Redraw => self.screen.redraw(),
                    EditorEvent::Candidates(candidates) => {
                        let shown: Vec<&str> = candidates
                            .iter()
                            .take(MAX_CANDIDATES_SHOWN)
                            .map(String::as_str)
                            .collect();
                        self.screen.set_hint(Some(shown.join(" ")));
                    }
                }
            }
            InputEvent::Paste(text) => self.editor.paste(&text),
            InputEvent::Mouse(_)
            | InputEvent::PixelMouse(_)
            | InputEvent::Resized { .. }
            | InputEvent::Wake => {}
        }
    }

    /// The client's terminal changed size; the next render repaints everything.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.screen.resize(cols, rows);
    }

    /// Add a line only this session shows to the message area (command output, errors, its
    /// own notices); text is sanitized here too. These count against
    /// [`MAX_PRIVATE_BYTES`](crate::scrollback::MAX_PRIVATE_BYTES).
    pub fn push(&mut self, mut message: Message) {
        message.text = sanitize(&message.text);
        self.screen.push(message);
    }

    /// Add a line built once and given to every session (a chat line, a join) to the
    /// message area: the session keeps a pointer to it. Text that is not clean is
    /// sanitized into a copy of this session's own.
    pub fn push_shared(&mut self, message: Arc<Message>) {
        if message.text.chars().any(is_unsafe_char) {
            return self.push(Message::clone(&message));
        }
        self.screen.push_shared(message);
    }

    /// Replaces the status line's instance name and online count.
    pub fn set_status(&mut self, status: Status) {
        self.screen.set_status(status);
    }

    /// Nicknames offered by tab completion after '@'.
    pub fn set_nicks(&mut self, nicks: Vec<String>) {
        self.nicks = nicks;
    }

    /// Bytes to write to the terminal to bring it up to date (the first call sets up the
    /// screen: clear, bracketed paste on). Returns empty when nothing changed.
    pub fn render(&mut self) -> Vec<u8> {
        self.screen.render(&self.editor)
    }

    /// Bytes that restore the terminal before the session ends (bracketed paste off, cursor
    /// below the last line, attributes reset).
    pub fn farewell(&mut self) -> Vec<u8> {
        self.screen.farewell()
    }

    /// Whether the message area is paged back (PgUp) rather than following new messages.
    pub fn scrolled_back(&self) -> bool {
        self.screen.scrolled_back()
    }

    /// How many messages the session keeps for paging back (for tests).
    pub fn kept_messages(&self) -> usize {
        self.screen.kept_messages()
    }

    /// Bytes of this session's own messages it keeps (for tests).
    pub fn private_bytes(&self) -> usize {
        self.screen.private_bytes()
    }

    /// The current input line (for tests).
    pub fn input(&self) -> &str {
        self.editor.text()
    }

    /// Graphemes the line editor has segmented, measured or stepped over since the session
    /// began: its work, independent of the machine (for tests; see [`Editor`]).
    pub fn graphemes_visited(&self) -> u64 {
        self.editor.graphemes_visited()
    }

    /// The screen as text, one String per row (for tests).
    pub fn screen_text(&self) -> Vec<String> {
        self.screen.text(&self.editor)
    }

    /// Where the cursor is after the next render: (column, row), zero-based.
    pub fn cursor(&self) -> (usize, usize) {
        self.screen.cursor(&self.editor)
    }
}
