//! The screen: message area, status line and input line, rendered with termwiz.
//!
//! Layout, top to bottom: `rows - 2` rows of messages (newest at the bottom, long ones
//! wrapped), one status line in reverse video, and the input line (prompt, then the editor's
//! text, scrolled sideways so the cursor is always visible).
//!
//! The message area shows the newest messages, or, after PgUp, older ones: the session keeps
//! the last [`SCROLLBACK_MESSAGES`] ([`Scrollback`]) and wraps only the rows it shows. While
//! paged back, the view stays put as messages arrive and its last row says how many are below.
//!
//! Rendering is a diff. [`Screen`] keeps a termwiz [`Surface`] of what the client's terminal
//! shows; each [`Screen::render`] composes a new surface from the state, scrolls the message
//! area of the old one by the rows that new messages added, and sends only the cells that
//! differ, then puts the cursor back in the input line. A new chat line therefore costs a
//! scroll and one row, and incoming messages never garble the line being typed.
//!
//! **Boundary:** the bytes are produced by termwiz's `TerminfoRenderer` from a terminfo entry
//! compiled into this crate (xterm-256color), never from the server's terminfo database: the
//! client's terminal is not the server's, and the renderer must not depend on what is
//! installed on the server. xterm's sequences are understood by every terminal a stock SSH
//! client runs in (xterm, VTE, iTerm2, PuTTY, Windows Terminal, screen, tmux).

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::Arc;

use termwiz::caps::{Capabilities, ColorLevel, ProbeHints};
use termwiz::cell::{CellAttributes, Intensity};
use termwiz::color::AnsiColor;
use termwiz::render::terminfo::TerminfoRenderer;
use termwiz::render::RenderTty;
use termwiz::surface::{Change, Position, Surface};
use unicode_segmentation::UnicodeSegmentation;

use crate::editor::{grapheme_width, Editor};
use crate::message::{Message, Part, NICK_PALETTE};
use crate::sanitize::sanitize;
pub use crate::scrollback::SCROLLBACK_MESSAGES;
use crate::scrollback::{Anchor, Scrollback};

/// Widest screen we draw, in columns; a wider terminal gets this many (bounds memory).
pub const MAX_COLS: u16 = 1000;

/// Tallest screen we draw, in rows; a taller terminal gets this many (bounds memory).
pub const MAX_ROWS: u16 = 500;

/// What precedes the input line.
const PROMPT: &str = "> ";

/// Rows below the message area: the status line and the input line.
const CHROME_ROWS: usize = 2;

/// The compiled terminfo entry the renderer uses for every client (see the module docs).
const XTERM_TERMINFO: &[u8] = include_bytes!("../data/xterm-256color");

/// Nickname colours, readable on dark and light backgrounds.
const NICK_COLOURS: [AnsiColor; NICK_PALETTE as usize] = [
    AnsiColor::Maroon,
    AnsiColor::Green,
    AnsiColor::Olive,
    AnsiColor::Purple,
    AnsiColor::Teal,
    AnsiColor::Blue,
    AnsiColor::Red,
    AnsiColor::Fuchsia,
];

/// Sets up the client's terminal on the first render: bracketed paste on, scroll region reset.
const SETUP: &[u8] = b"\x1b[?2004h\x1b[r";

/// What the status line shows about the instance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// The instance's name (its domain).
    pub instance: String,
    /// How many people are online.
    pub online: usize,
    /// Transfers in progress, such as `get song.flac 42% 3.1 MiB/s ETA 0:04`; empty when none.
    pub activity: String,
}

/// The message area needs this many rows for paging back: one for messages, one for the
/// marker.
const MIN_AREA_TO_SCROLL: usize = 2;

/// A run of text with one set of attributes.
type Span = (CellAttributes, String);

/// One screen row of a wrapped message.
type Row = Vec<Span>;

/// What the message area shows, top to bottom (fewer rows than the area: blank above).
#[derive(Clone, Default)]
struct View {
    rows: Vec<Row>,
}

/// The screen state and the model of what the client shows.
pub struct Screen {
    /// Screen width in columns, 1..=MAX_COLS.
    cols: usize,
    /// Screen height in rows, 1..=MAX_ROWS.
    rows: usize,
    /// Turns changes into bytes; keeps the attributes it last sent.
    renderer: TerminfoRenderer,
    /// What the client's terminal shows now.
    shown: Surface,
    /// Where the client's cursor is now.
    shown_cursor: Option<(usize, usize)>,
    /// The kept messages (unwrapped) and where the view is.
    messages: Scrollback,
    /// The rows the message area shows, wrapped from `messages`; `None` when they changed
    /// since the last render.
    view: Option<View>,
    /// Rows added to the bottom of the message area since the last render.
    pending_scroll: usize,
    /// Whether the next render must clear and repaint everything (first render, resize,
    /// Ctrl-L).
    full_redraw: bool,
    /// Whether the terminal has been set up (bracketed paste on).
    started: bool,
    /// The status line's instance and online count.
    status: Status,
    /// The user's nick, shown in the status line.
    nick: String,
    /// Completion candidates shown in the status line until the next key.
    hint: Option<String>,
    /// First display column of the input text that is visible (horizontal scroll).
    hscroll: usize,
}

impl Screen {
    /// A screen for a client terminal of type `term` and the given size.
    pub fn new(term: &str, cols: u16, rows: u16, nick: &str, status: Status) -> Self {
        let (cols, rows) = clamp_size(cols, rows);
        Screen {
            cols,
            rows,
            renderer: TerminfoRenderer::new(capabilities(term)),
            shown: Surface::new(cols, rows),
            shown_cursor: None,
            messages: Scrollback::new(),
            view: None,
            pending_scroll: 0,
            full_redraw: true,
            started: false,
            status,
            nick: sanitize(nick),
            hint: None,
            hscroll: 0,
        }
    }

    /// Adds a message only this session shows at the bottom of the message area.
    pub fn push(&mut self, message: Message) {
        self.follow_new_rows(&message);
        self.messages.push_private(message);
    }

    /// Adds a message shared with other sessions (see [`Scrollback::push_shared`]).
    pub fn push_shared(&mut self, message: Arc<Message>) {
        self.follow_new_rows(&message);
        self.messages.push_shared(message);
    }

    /// Counts the rows a new message adds when the view follows the newest messages.
    fn follow_new_rows(&mut self, message: &Message) {
        if self.messages.anchor().is_none() {
            self.pending_scroll += wrap(message, self.cols).len();
        }
        self.view = None;
    }

    /// Pages back: the top row of the message area becomes its bottom row, above a marker
    /// saying how many messages are below. Stops when the oldest kept message is at the top.
    pub fn page_up(&mut self) {
        let area = self.message_area_rows();
        let Some(bottom) = self.bottom() else {
            return;
        };
        if area < MIN_AREA_TO_SCROLL {
            return;
        }
        let anchor = self.messages.anchor();
        let shown = if anchor.is_some() { area - 1 } else { area };
        let moved = self.rows_up(anchor.unwrap_or(bottom), page(shown));
        let highest = self.rows_down(Anchor { index: 0, row: 0 }, area - 2);
        self.scroll_to(moved.max(highest), bottom);
    }

    /// Pages forward: the bottom row becomes the top row; at the newest message the view
    /// follows new messages again.
    pub fn page_down(&mut self) {
        let (Some(anchor), Some(bottom)) = (self.messages.anchor(), self.bottom()) else {
            return;
        };
        let shown = self.message_area_rows().saturating_sub(1);
        let moved = self.rows_down(anchor, page(shown));
        self.scroll_to(moved, bottom);
    }

    /// Follows the newest messages again.
    pub fn scroll_to_bottom(&mut self) {
        if self.messages.anchor().is_some() {
            self.messages.set_anchor(None);
            self.view = None;
        }
    }

    /// Whether the view is paged back.
    pub fn scrolled_back(&self) -> bool {
        self.messages.anchor().is_some()
    }

    /// How many messages are kept.
    pub fn kept_messages(&self) -> usize {
        self.messages.len()
    }

    /// Bytes of this session's own messages kept (see [`crate::scrollback::MAX_PRIVATE_BYTES`]).
    pub fn private_bytes(&self) -> usize {
        self.messages.private_bytes()
    }

    /// Puts the view's bottom row at `target`; at `bottom` (the newest row) it follows.
    fn scroll_to(&mut self, target: Anchor, bottom: Anchor) {
        let anchor = (target < bottom).then_some(target);
        if anchor != self.messages.anchor() {
            self.messages.set_anchor(anchor);
            self.view = None;
        }
    }

    /// The last row of the newest message; `None` when there are no messages.
    fn bottom(&self) -> Option<Anchor> {
        let index = self.messages.len().checked_sub(1)?;
        Some(Anchor {
            index,
            row: self.row_count(index) - 1,
        })
    }

    /// Rows message `index` wraps to (at least 1).
    fn row_count(&self, index: usize) -> usize {
        self.messages
            .get(index)
            .map_or(1, |m| wrap(m, self.cols).len())
    }

    /// The position `n` rows above `from`, or the oldest row.
    fn rows_up(&self, mut from: Anchor, mut n: usize) -> Anchor {
        while n > 0 {
            if from.row > 0 {
                let step = n.min(from.row);
                from.row -= step;
                n -= step;
            } else if from.index > 0 {
                from.index -= 1;
                from.row = self.row_count(from.index) - 1;
                n -= 1;
            } else {
                break;
            }
        }
        from
    }

    /// The position `n` rows below `from`, or the newest row.
    fn rows_down(&self, mut from: Anchor, mut n: usize) -> Anchor {
        while n > 0 {
            let rows = self.row_count(from.index);
            if from.row + 1 < rows {
                let step = n.min(rows - 1 - from.row);
                from.row += step;
                n -= step;
            } else if from.index + 1 < self.messages.len() {
                from.index += 1;
                from.row = 0;
                n -= 1;
            } else {
                break;
            }
        }
        from
    }

    /// Replaces the status line's instance and online count.
    pub fn set_status(&mut self, status: Status) {
        self.status = status;
    }

    /// Shows `hint` (completion candidates) in the status line, or clears it.
    pub fn set_hint(&mut self, hint: Option<String>) {
        self.hint = hint.map(|h| sanitize(&h));
    }

    /// Changes the size: everything is rewrapped and repainted on the next render.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        let (cols, rows) = clamp_size(cols, rows);
        self.cols = cols;
        self.rows = rows;
        if let Some(mut anchor) = self.messages.anchor() {
            anchor.row = anchor.row.min(self.row_count(anchor.index) - 1);
            self.messages.set_anchor(Some(anchor));
        }
        self.view = None;
        self.redraw();
    }

    /// Makes the next render clear the screen and repaint everything.
    pub fn redraw(&mut self) {
        self.full_redraw = true;
    }

    /// Bytes that bring the client's terminal up to date; empty when nothing changed.
    pub fn render(&mut self, editor: &Editor) -> Vec<u8> {
        if self.view.is_none() {
            self.view = Some(self.compose_view());
        }
        let (next, cursor, hscroll) = self.compose(editor);
        self.hscroll = hscroll;
        let mut sink = Sink::new(self.cols, self.rows);
        let mut changes = Vec::new();
        let area = self.message_area_rows();
        if !self.started || self.full_redraw {
            sink.bytes.extend_from_slice(SETUP);
            self.started = true;
            self.full_redraw = false;
            self.shown = Surface::new(self.cols, self.rows);
            self.shown_cursor = None;
            changes.push(Change::ClearScreen(Default::default()));
        } else if (1..area).contains(&self.pending_scroll) {
            let scroll = Change::ScrollRegionUp {
                first_row: 0,
                region_size: area,
                scroll_count: self.pending_scroll,
            };
            self.shown.add_change(scroll.clone());
            changes.push(scroll);
        }
        self.pending_scroll = 0;
        changes.extend(self.shown.diff_screens(&next));
        if changes.is_empty() && self.shown_cursor == Some(cursor) {
            return Vec::new();
        }
        changes.push(Change::AllAttributes(CellAttributes::default()));
        changes.push(Change::CursorPosition {
            x: Position::Absolute(cursor.0),
            y: Position::Absolute(cursor.1),
        });
        self.shown = next;
        self.shown_cursor = Some(cursor);
        if self.renderer.render_to(&changes, &mut sink).is_err() {
            // Writing to a Vec does not fail; should the renderer, repaint next time.
            self.full_redraw = true;
        }
        sink.bytes
    }

    /// Bytes that restore the terminal before the session ends: bracketed paste off,
    /// scroll region and attributes reset, cursor on a fresh line below the screen.
    pub fn farewell(&mut self) -> Vec<u8> {
        format!("\x1b[?2004l\x1b[r\x1b[0m\x1b[{};1H\r\n", self.rows).into_bytes()
    }

    /// The screen as text, one String per row, each `cols` columns wide.
    pub fn text(&self, editor: &Editor) -> Vec<String> {
        let (surface, _, _) = self.compose(editor);
        surface
            .screen_lines()
            .iter()
            .map(|line| line.as_str().into_owned())
            .collect()
    }

    /// Where the cursor is (column, row) after the next render.
    pub fn cursor(&self, editor: &Editor) -> (usize, usize) {
        self.compose(editor).1
    }

    fn message_area_rows(&self) -> usize {
        self.rows.saturating_sub(CHROME_ROWS)
    }

    /// The screen as it should be: the surface, the cursor and the horizontal scroll.
    fn compose(&self, editor: &Editor) -> (Surface, (usize, usize), usize) {
        let mut surface = Surface::new(self.cols, self.rows);
        let area = self.message_area_rows();
        let view = match &self.view {
            Some(view) => Cow::Borrowed(view),
            None => Cow::Owned(self.compose_view()),
        };
        let top = area.saturating_sub(view.rows.len());
        for (i, row) in view.rows.iter().enumerate() {
            draw_row(&mut surface, top + i, row);
        }
        if self.rows >= CHROME_ROWS {
            let status = self.status_row();
            draw_row(&mut surface, self.rows - CHROME_ROWS, &status);
        }
        let (row, cursor_x, hscroll) = self.input_row(editor);
        let input_y = self.rows - 1;
        draw_row(&mut surface, input_y, &row);
        surface.flush_changes_older_than(surface.current_seqno());
        (surface, (cursor_x, input_y), hscroll)
    }

    /// The rows of the message area: the newest messages, or while paged back the rows
    /// that end at the anchor and the marker below them. Wraps only the messages shown.
    fn compose_view(&self) -> View {
        let area = self.message_area_rows();
        let Some(bottom) = self.bottom() else {
            return View::default();
        };
        match self.messages.anchor() {
            None => View {
                rows: self.rows_ending_at(bottom, area),
            },
            Some(anchor) => {
                let mut rows = self.rows_ending_at(anchor, area.saturating_sub(1));
                let cut = usize::from(anchor.row + 1 < self.row_count(anchor.index));
                let below = self.messages.len() - 1 - anchor.index + cut;
                rows.push(self.marker_row(below));
                View { rows }
            }
        }
    }

    /// Up to `count` rows, the last of them `end`.
    fn rows_ending_at(&self, end: Anchor, count: usize) -> Vec<Row> {
        let mut rows: Vec<Row> = Vec::with_capacity(count);
        let mut index = end.index;
        let mut last_row = Some(end.row);
        while rows.len() < count {
            let Some(message) = self.messages.get(index) else {
                break;
            };
            let mut wrapped = wrap(message, self.cols);
            if let Some(last) = last_row {
                wrapped.truncate(last + 1);
            }
            let take = wrapped.len().min(count - rows.len());
            rows.extend(wrapped.into_iter().rev().take(take));
            if index == 0 {
                break;
            }
            index -= 1;
            last_row = None;
        }
        rows.reverse();
        rows
    }

    /// The last row of the message area while paged back.
    fn marker_row(&self, below: usize) -> Row {
        let text = format!("-- {below} more below (PgDn) --");
        let fitted: String = text.chars().take(self.cols).collect();
        let mut attrs = CellAttributes::default();
        attrs.set_intensity(Intensity::Bold);
        vec![(attrs, fitted)]
    }

    /// The status line: instance, online count, nick and any hint, in reverse video,
    /// padded to the full width.
    fn status_row(&self) -> Row {
        let mut text = format!(
            " {} | {} online | {} ",
            sanitize(&self.status.instance),
            self.status.online,
            self.nick
        );
        if !self.status.activity.is_empty() {
            text.push_str("| ");
            text.push_str(&sanitize(&self.status.activity));
            text.push(' ');
        }
        if let Some(hint) = &self.hint {
            text.push_str("| ");
            text.push_str(hint);
            text.push(' ');
        }
        let mut fitted = String::new();
        let mut used = 0;
        for g in text.graphemes(true) {
            let width = grapheme_width(g);
            if used + width > self.cols {
                break;
            }
            if width > 0 {
                fitted.push_str(g);
                used += width;
            }
        }
        fitted.extend(std::iter::repeat_n(' ', self.cols - used));
        let mut attrs = CellAttributes::default();
        attrs.set_reverse(true);
        vec![(attrs, fitted)]
    }

    /// The input line (prompt and visible part of the text), the cursor column and the new
    /// horizontal scroll. Only the visible part of the line is looked at.
    fn input_row(&self, editor: &Editor) -> (Row, usize, usize) {
        let prompt = if self.cols > PROMPT.len() { PROMPT } else { "" };
        let room = self.cols - prompt.len();
        let column = editor.cursor_column();
        let mut hscroll = self.hscroll;
        if editor.width() < room {
            hscroll = 0;
        } else if column < hscroll {
            hscroll = column;
        } else if column >= hscroll + room {
            hscroll = column + 1 - room;
        }
        let row = vec![
            (CellAttributes::default(), prompt.to_owned()),
            (CellAttributes::default(), editor.visible(hscroll, room)),
        ];
        (row, prompt.len() + column - hscroll, hscroll)
    }
}

/// The rows a page moves when `shown` rows are on screen: all but one, which stays for
/// context.
fn page(shown: usize) -> usize {
    shown.saturating_sub(1).max(1)
}

/// Clamps a client's size to what we draw: at least 1x1, at most MAX_COLS x MAX_ROWS.
fn clamp_size(cols: u16, rows: u16) -> (usize, usize) {
    (
        usize::from(cols.clamp(1, MAX_COLS)),
        usize::from(rows.clamp(1, MAX_ROWS)),
    )
}

/// The renderer's capabilities: the compiled-in xterm entry, 16 colours (all we use).
/// `term` is passed along as the hint termwiz asks for; with an explicit terminfo entry it
/// never causes a lookup on the server's disk.
fn capabilities(term: &str) -> Capabilities {
    let hints = || {
        ProbeHints::default()
            .term(Some(term.to_owned()))
            .colorterm(None)
            .color_level(Some(ColorLevel::Sixteen))
            .bracketed_paste(Some(true))
            .mouse_reporting(Some(false))
            .hyperlinks(Some(false))
    };
    let terminfo = terminfo::Database::from_buffer(XTERM_TERMINFO).ok();
    match Capabilities::new_with_hints(hints().terminfo_db(terminfo)) {
        Ok(caps) => caps,
        Err(_) => bare_capabilities(),
    }
}

/// Capabilities without a terminfo entry. `new_with_hints` cannot fail today (it returns
/// `Ok` on every path); should a future termwiz change that, this is the last resort.
fn bare_capabilities() -> Capabilities {
    let hints = ProbeHints::default()
        .term(Some("xterm-256color".to_owned()))
        .color_level(Some(ColorLevel::Sixteen));
    Capabilities::new_with_hints(hints).expect("termwiz builds capabilities from explicit hints")
}

/// Wraps a message to `width` columns, with its colours. Graphemes of width zero (a lone
/// combining mark) are dropped: a terminal would not advance the cursor for them.
fn wrap(message: &Message, width: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut row: Row = Vec::new();
    let mut used = 0;
    for (part, text) in message.parts() {
        let attrs = attributes(part);
        for g in text.graphemes(true) {
            let w = grapheme_width(g);
            if w == 0 || w > width {
                continue;
            }
            if used + w > width {
                rows.push(std::mem::take(&mut row));
                used = 0;
            }
            match row.last_mut() {
                Some((last, text)) if *last == attrs => text.push_str(g),
                _ => row.push((attrs.clone(), g.to_owned())),
            }
            used += w;
        }
    }
    rows.push(row);
    rows
}

/// The colours of each part of a message.
fn attributes(part: Part) -> CellAttributes {
    let mut attrs = CellAttributes::default();
    match part {
        Part::Time | Part::Notice => {
            attrs.set_intensity(Intensity::Half);
        }
        Part::Nick(colour) => {
            let colour = NICK_COLOURS
                .get(usize::from(colour))
                .copied()
                .unwrap_or(AnsiColor::Teal);
            attrs.set_foreground(colour).set_intensity(Intensity::Bold);
        }
        Part::Error => {
            attrs.set_foreground(AnsiColor::Red);
        }
        Part::Private => {
            attrs
                .set_foreground(AnsiColor::Fuchsia)
                .set_intensity(Intensity::Bold);
        }
        Part::Marker | Part::Text => {}
    }
    attrs
}

/// Draws `row` at line `y` of `surface`, from the left edge.
fn draw_row(surface: &mut Surface, y: usize, row: &Row) {
    surface.add_change(Change::CursorPosition {
        x: Position::Absolute(0),
        y: Position::Absolute(y),
    });
    for (attrs, text) in row {
        surface.add_change(Change::AllAttributes(attrs.clone()));
        surface.add_change(Change::Text(text.clone()));
    }
}

/// The renderer's output: a byte buffer that knows the screen size.
struct Sink {
    /// What to send to the client.
    bytes: Vec<u8>,
    /// (cols, rows), which the renderer asks for.
    size: (usize, usize),
}

impl Sink {
    fn new(cols: usize, rows: usize) -> Self {
        Sink {
            bytes: Vec::new(),
            size: (cols, rows),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl RenderTty for Sink {
    fn get_size_in_cells(&mut self) -> termwiz::Result<(usize, usize)> {
        Ok(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_terminfo_entry_parses() {
        let db = terminfo::Database::from_buffer(XTERM_TERMINFO);
        assert!(db.is_ok(), "{:?}", db.err());
    }

    #[test]
    fn every_term_renders_the_same_without_terminfo_on_disk() {
        let render = |term: &str| {
            let mut screen = Screen::new(term, 20, 5, "alice", Status::default());
            screen.push(Message::chat(0, "bob", "hi"));
            screen.render(&Editor::new())
        };
        let reference = render("xterm-256color");
        assert!(!reference.is_empty());
        for term in [
            "screen",
            "tmux-256color",
            "dumb",
            "vt100",
            "",
            "no-such-term",
            "../../etc/passwd",
        ] {
            assert_eq!(render(term), reference, "TERM={term:?}");
        }
    }

    #[test]
    fn wrapping_respects_wide_characters() {
        let message = Message::output(0, "ab日本語cd");
        let rows: Vec<String> = wrap(&message, 5)
            .iter()
            .map(|row| row.iter().map(|(_, t)| t.as_str()).collect())
            .collect();
        assert_eq!(rows, ["ab日", "本語c", "d"]);
    }

    #[test]
    fn tiny_and_huge_sizes_are_clamped() {
        assert_eq!(clamp_size(0, 0), (1, 1));
        assert_eq!(
            clamp_size(u16::MAX, u16::MAX),
            (usize::from(MAX_COLS), usize::from(MAX_ROWS))
        );
        for (cols, rows) in [(0, 0), (1, 1), (2, 2), (3, 3), (1, 40)] {
            let mut screen = Screen::new("xterm", cols, rows, "alice", Status::default());
            screen.push(Message::chat(0, "bob", "日本語 text"));
            let mut editor = Editor::new();
            editor.paste("日本語 input");
            assert!(!screen.render(&editor).is_empty());
            let (x, y) = screen.cursor(&editor);
            assert!(
                x < screen.cols && y < screen.rows,
                "{cols}x{rows}: cursor {x},{y}"
            );
        }
    }
}
