//! The input line: a small line editor with history and tab completion.
//!
//! The line is a `String` cut into grapheme clusters (a combining mark stays with its base
//! character, `日` is one step of two columns), each with its length and display width, kept
//! up to date edit by edit. The cursor is a cluster index with its byte offset and column.
//! The editor never holds control characters and never grows beyond [`MAX_LINE_BYTES`].
//!
//! **Invariant: a key costs the same whatever the line holds.** An edit re-segments only the
//! cluster before it, the text it inserts and the few clusters after it until the new
//! boundaries meet the old ones ([`MAX_CLUSTER_BYTES`], [`RESEGMENT_BYTES`]); the width and the
//! cursor column are kept, not recounted; the screen asks only for the visible part
//! ([`Editor::visible`]); history entries keep their clusters. What still grows with the line
//! is a `memmove` of at most [`MAX_LINE_BYTES`] when inserting in the middle, and word motions
//! (Alt-B/F, Ctrl-W), which step over one word. [`Editor::graphemes_visited`] counts the work so
//! tests can prove it.
//!
//! Keys arrive as termwiz [`KeyEvent`]s (decoded by the shell); [`Editor::handle_key`]
//! applies one and says what the shell should do about it.

use std::cell::Cell;
use std::collections::VecDeque;

use termwiz::input::{KeyCode, KeyEvent, Modifiers};
use unicode_segmentation::UnicodeSegmentation;

use crate::command::{command_names, MAX_LINE_BYTES};
use crate::sanitize::{is_unsafe_char, sanitize};

/// How many submitted lines Up/Down can recall.
pub const HISTORY_LINES: usize = 100;

/// Longest grapheme cluster the line holds, in bytes. Real clusters are far shorter (a family
/// emoji with skin tones is 41 bytes, a flag of a region 28); a longer pile of combining marks
/// is cut here, and marks typed past it are dropped. This bounds how much text one edit
/// re-segments.
pub const MAX_CLUSTER_BYTES: usize = 64;

/// How far past an edit the line is re-segmented at most, in bytes, looking for the point
/// where the new clusters meet the old ones again. Ordinary text meets them within one
/// cluster; only a run of flags (regional indicators pair up from the start of their run)
/// can need more, and past this bound the run keeps its old pairs.
pub const RESEGMENT_BYTES: usize = 2 * MAX_CLUSTER_BYTES;

/// Longest word (in clusters) Tab looks back over: longer than any command name or nickname,
/// so a longer word has nothing to complete.
const MAX_COMPLETED_WORD: usize = 64;

/// What the shell should do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditorEvent {
    /// Nothing beyond repainting the input line (if it changed).
    None,
    /// Enter on a non-blank line: the line, which is now in the history.
    Submit(String),
    /// Ctrl-D on an empty line.
    Quit,
    /// Ctrl-L: repaint the whole screen.
    Redraw,
    /// Tab found several candidates; the line holds their common prefix.
    Candidates(Vec<String>),
}

/// One grapheme cluster of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cluster {
    /// Its length in bytes, at most [`MAX_CLUSTER_BYTES`].
    len: u16,
    /// Its display width in columns, as the screen draws it.
    width: u16,
}

/// A line of text cut into clusters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Line {
    /// The text.
    text: String,
    /// The clusters of `text`, in order; their lengths add up to `text.len()`.
    clusters: Vec<Cluster>,
    /// The sum of the clusters' widths, kept so that nothing has to add them up.
    width: usize,
}

/// A boundary between two clusters of a [`Line`] (or its start or end).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Pos {
    /// Clusters before it.
    index: usize,
    /// Bytes before it.
    byte: usize,
    /// Columns before it.
    column: usize,
}

impl Line {
    fn end(&self) -> Pos {
        Pos {
            index: self.clusters.len(),
            byte: self.text.len(),
            column: self.width,
        }
    }

    /// The boundary one cluster before `p`, if any.
    fn before(&self, p: Pos) -> Option<Pos> {
        let c = self.clusters.get(p.index.checked_sub(1)?)?;
        Some(Pos {
            index: p.index - 1,
            byte: p.byte - usize::from(c.len),
            column: p.column - usize::from(c.width),
        })
    }

    /// The boundary one cluster after `p`, if any.
    fn after(&self, p: Pos) -> Option<Pos> {
        let c = self.clusters.get(p.index)?;
        Some(Pos {
            index: p.index + 1,
            byte: p.byte + usize::from(c.len),
            column: p.column + usize::from(c.width),
        })
    }

    /// Whether the cluster that starts at `p` starts with whitespace.
    fn is_space_at(&self, p: Pos) -> bool {
        self.text
            .get(p.byte..)
            .and_then(|rest| rest.chars().next())
            .is_some_and(char::is_whitespace)
    }
}

/// The input line, its history and the nicknames it completes.
#[derive(Debug, Default)]
pub struct Editor {
    /// The line being typed.
    line: Line,
    /// Where the cursor is in `line`.
    cursor: Pos,
    /// Submitted lines with their clusters, oldest first, at most [`HISTORY_LINES`].
    history: VecDeque<Line>,
    /// Which history entry is shown, while browsing with Up/Down.
    history_index: Option<usize>,
    /// The half-typed line that was there before Up, restored by Down past the newest entry.
    draft: Line,
    /// Graphemes segmented, measured or stepped over so far: the editor's work, which tests
    /// use to prove that a key costs the same whatever the line holds.
    visited: Cell<u64>,
}

impl Editor {
    /// An empty editor with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// The line being typed.
    pub fn text(&self) -> &str {
        &self.line.text
    }

    /// The display width of the whole line (wide characters count two).
    pub fn width(&self) -> usize {
        self.line.width
    }

    /// The display column of the cursor (wide characters count two).
    pub fn cursor_column(&self) -> usize {
        self.cursor.column
    }

    /// How many graphemes the editor has segmented, measured or stepped over since it was
    /// made: a measure of work that does not depend on the machine (see the module docs).
    pub fn graphemes_visited(&self) -> u64 {
        self.visited.get()
    }

    fn visit(&self) {
        self.visited.set(self.visited.get() + 1);
    }

    /// The text shown in columns `from..from + room`: the clusters that fit whole, with a
    /// wide one cut by the left edge shown as blanks for its visible half, and zero-width
    /// ones left out. Costs the distance from the cursor to `from`, plus `room`.
    pub fn visible(&self, from: usize, room: usize) -> String {
        let line = &self.line;
        let mut visible = String::new();
        let mut p = self.cursor;
        while p.column > from {
            let Some(before) = line.before(p) else { break };
            self.visit();
            p = before;
        }
        while p.column < from {
            let Some(after) = line.after(p) else { break };
            self.visit();
            if after.column > from {
                visible.extend(std::iter::repeat_n(' ', after.column - from));
            }
            p = after;
        }
        while let Some(after) = line.after(p) {
            if after.column > from + room {
                break;
            }
            self.visit();
            if after.column > p.column {
                visible.push_str(&line.text[p.byte..after.byte]);
            }
            p = after;
        }
        visible
    }

    /// Applies one key. `nicks` are the nicknames `@` completes.
    pub fn handle_key(&mut self, key: &KeyEvent, nicks: &[String]) -> EditorEvent {
        let ctrl = key.modifiers.contains(Modifiers::CTRL);
        let alt = key.modifiers.contains(Modifiers::ALT);
        match key.key {
            KeyCode::Enter => return self.submit(),
            KeyCode::Tab if key.modifiers == Modifiers::NONE => return self.complete(nicks),
            KeyCode::Char('l') if ctrl => return EditorEvent::Redraw,
            KeyCode::Char('d') if ctrl => {
                if self.line.text.is_empty() {
                    return EditorEvent::Quit;
                }
                self.delete();
            }
            KeyCode::Char('c') if ctrl => self.clear(),
            KeyCode::Char('a') if ctrl => self.home(),
            KeyCode::Char('e') if ctrl => self.end(),
            KeyCode::Char('b') if ctrl => self.left(),
            KeyCode::Char('f') if ctrl => self.right(),
            KeyCode::Char('w') if ctrl => self.delete_word_before(),
            KeyCode::Char('u') if ctrl => self.delete_to_start(),
            KeyCode::Char('k') if ctrl => self.kill_to_end(),
            KeyCode::Char('p') if ctrl => self.history_previous(),
            KeyCode::Char('n') if ctrl => self.history_next(),
            KeyCode::Char('b') if alt => self.word_left(),
            KeyCode::Char('f') if alt => self.word_right(),
            KeyCode::Backspace if alt => self.delete_word_before(),
            KeyCode::Char(c) if !ctrl && !alt => self.insert(c.encode_utf8(&mut [0; 4])),
            KeyCode::Backspace => self.backspace(),
            KeyCode::Delete => self.delete(),
            KeyCode::LeftArrow | KeyCode::ApplicationLeftArrow if ctrl || alt => self.word_left(),
            KeyCode::RightArrow | KeyCode::ApplicationRightArrow if ctrl || alt => {
                self.word_right()
            }
            KeyCode::LeftArrow | KeyCode::ApplicationLeftArrow => self.left(),
            KeyCode::RightArrow | KeyCode::ApplicationRightArrow => self.right(),
            KeyCode::Home => self.home(),
            KeyCode::End => self.end(),
            KeyCode::UpArrow | KeyCode::ApplicationUpArrow => self.history_previous(),
            KeyCode::DownArrow | KeyCode::ApplicationDownArrow => self.history_next(),
            _ => {}
        }
        EditorEvent::None
    }

    /// Inserts pasted text: line breaks become spaces, controls are removed, and what does
    /// not fit in [`MAX_LINE_BYTES`] is dropped. Linear in the paste.
    pub fn paste(&mut self, text: &str) {
        let flat: String = text
            .replace("\r\n", "\n")
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        self.insert(&sanitize(&flat));
    }

    /// Inserts `text` at the cursor, up to the bound, skipping unsafe characters. On a full
    /// line this returns at once.
    fn insert(&mut self, text: &str) {
        let room = MAX_LINE_BYTES.saturating_sub(self.line.text.len());
        let mut fitting = String::new();
        for c in text.chars().filter(|c| !is_unsafe_char(*c)) {
            if fitting.len() + c.len_utf8() > room {
                break;
            }
            fitting.push(c);
        }
        if !fitting.is_empty() {
            self.cursor = self.splice(self.cursor, self.cursor, &fitting);
        }
    }

    /// Replaces the clusters from `from` to `to` with `insert` and re-segments around the
    /// edit: from the cluster before it (whose start cannot move) until the new boundaries
    /// meet the old ones, at most [`RESEGMENT_BYTES`] past the edit. Zero-width clusters of
    /// inserted text (a lone combining mark, marks past [`MAX_CLUSTER_BYTES`]) are dropped.
    /// Returns the first boundary at or after the end of the inserted text.
    fn splice(&mut self, from: Pos, to: Pos, insert: &str) -> Pos {
        let start = self.line.before(from).unwrap_or(from);
        let Line {
            text,
            clusters,
            width,
        } = &mut self.line;
        text.replace_range(from.byte..to.byte, insert);
        let edit_end = from.byte + insert.len();
        let mut limit = (edit_end + RESEGMENT_BYTES).min(text.len());
        while !text.is_char_boundary(limit) {
            limit -= 1;
        }
        let mut window = Window {
            text,
            visited: &self.visited,
            inserted: from.byte..edit_end,
            target: edit_end,
            clusters: Vec::new(),
            dropped: Vec::new(),
            kept: Pos::default(),
            cursor: (edit_end <= start.byte).then_some(Pos::default()),
        };
        // The old clusters after the edit, walked as boundaries in the new text.
        let (mut old_index, mut old_byte, mut old_width) = (to.index, edit_end, 0);
        let mut graphemes = text[start.byte..limit].grapheme_indices(true);
        let mut pos = start.byte;
        let forced = loop {
            if pos >= edit_end {
                while old_byte < pos {
                    let Some(c) = clusters.get(old_index) else {
                        break;
                    };
                    old_byte += usize::from(c.len);
                    old_width += usize::from(c.width);
                    old_index += 1;
                }
                if old_byte == pos {
                    break false;
                }
            }
            let Some((i, g)) = graphemes.next() else {
                break true;
            };
            self.visited.set(self.visited.get() + 1);
            let (s, e) = (start.byte + i, start.byte + i + g.len());
            if e == limit && limit < text.len() {
                // The bound may cut this cluster: end the window at an old boundary instead.
                if s < edit_end {
                    window.push(s..e);
                    pos = e;
                } else {
                    pos = s;
                }
                break true;
            }
            window.push(s..e);
            pos = e;
        };
        if forced {
            while old_byte < pos {
                let Some(c) = clusters.get(old_index) else {
                    break;
                };
                old_byte += usize::from(c.len);
                old_width += usize::from(c.width);
                old_index += 1;
            }
            if old_byte > pos {
                window.push(pos..old_byte);
            }
        }
        let Window {
            clusters: new,
            dropped,
            kept,
            cursor,
            ..
        } = window;
        *width = *width + kept.column - (to.column - start.column + old_width);
        clusters.splice(start.index..old_index, new);
        for range in dropped.into_iter().rev() {
            text.replace_range(range, "");
        }
        let cursor = cursor.unwrap_or(kept);
        Pos {
            index: start.index + cursor.index,
            byte: start.byte + cursor.byte,
            column: start.column + cursor.column,
        }
    }

    fn home(&mut self) {
        self.cursor = Pos::default();
    }

    fn end(&mut self) {
        self.cursor = self.line.end();
    }

    fn left(&mut self) {
        if let Some(p) = self.line.before(self.cursor) {
            self.cursor = p;
        }
    }

    fn right(&mut self) {
        if let Some(p) = self.line.after(self.cursor) {
            self.cursor = p;
        }
    }

    /// Start of the word before the cursor (skipping whitespace first), as readline's Ctrl-W.
    fn word_start_before(&self) -> Pos {
        let mut p = self.cursor;
        for space in [true, false] {
            while let Some(before) = self.line.before(p) {
                if self.line.is_space_at(before) != space {
                    break;
                }
                self.visit();
                p = before;
            }
        }
        p
    }

    /// End of the word after the cursor (skipping whitespace first).
    fn word_end_after(&self) -> Pos {
        let mut p = self.cursor;
        for space in [true, false] {
            while self.line.is_space_at(p) == space {
                let Some(after) = self.line.after(p) else {
                    break;
                };
                self.visit();
                p = after;
            }
        }
        p
    }

    fn word_left(&mut self) {
        self.cursor = self.word_start_before();
    }

    fn word_right(&mut self) {
        self.cursor = self.word_end_after();
    }

    fn delete_word_before(&mut self) {
        let start = self.word_start_before();
        self.cursor = self.splice(start, self.cursor, "");
    }

    fn delete_to_start(&mut self) {
        self.cursor = self.splice(Pos::default(), self.cursor, "");
    }

    fn kill_to_end(&mut self) {
        self.cursor = self.splice(self.cursor, self.line.end(), "");
    }

    fn backspace(&mut self) {
        if let Some(start) = self.line.before(self.cursor) {
            self.cursor = self.splice(start, self.cursor, "");
        }
    }

    fn delete(&mut self) {
        if let Some(end) = self.line.after(self.cursor) {
            self.cursor = self.splice(self.cursor, end, "");
        }
    }

    fn clear(&mut self) {
        self.line = Line::default();
        self.cursor = Pos::default();
        self.history_index = None;
    }

    /// Shows `line` (from the history or the draft), cursor at its end; it keeps its
    /// clusters, so nothing is segmented again.
    fn set_line(&mut self, line: Line) {
        self.line = line;
        self.cursor = self.line.end();
    }

    fn submit(&mut self) -> EditorEvent {
        let line = std::mem::take(&mut self.line);
        self.clear();
        if line.text.trim().is_empty() {
            return EditorEvent::None;
        }
        let text = line.text.clone();
        if self.history.back().map(|l| &l.text) != Some(&text) {
            if self.history.len() == HISTORY_LINES {
                self.history.pop_front();
            }
            self.history.push_back(line);
        }
        EditorEvent::Submit(text)
    }

    fn history_previous(&mut self) {
        let index = match self.history_index {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.line.clone();
                self.history.len() - 1
            }
            Some(index) => index.saturating_sub(1),
        };
        self.history_index = Some(index);
        if let Some(line) = self.history.get(index) {
            self.set_line(line.clone());
        }
    }

    fn history_next(&mut self) {
        let Some(index) = self.history_index else {
            return;
        };
        if let Some(line) = self.history.get(index + 1) {
            self.history_index = Some(index + 1);
            self.set_line(line.clone());
        } else {
            self.history_index = None;
            let draft = std::mem::take(&mut self.draft);
            self.set_line(draft);
        }
    }

    /// Tab: completes the word before the cursor. `/wh` at the start of the line completes
    /// command names, `@al` anywhere completes nicknames (case-insensitively). A word longer
    /// than [`MAX_COMPLETED_WORD`] clusters completes nothing and is not read to its start.
    fn complete(&mut self, nicks: &[String]) -> EditorEvent {
        let mut start = self.cursor;
        let mut steps = 0;
        while let Some(before) = self.line.before(start) {
            if self.line.is_space_at(before) {
                break;
            }
            steps += 1;
            if steps > MAX_COMPLETED_WORD {
                return EditorEvent::None;
            }
            self.visit();
            start = before;
        }
        let word = self.line.text[start.byte..self.cursor.byte].to_owned();
        let candidates: Vec<String> = if start.byte == 0 && word.starts_with('/') {
            matching(&word[1..], command_names())
                .into_iter()
                .map(|name| format!("/{name}"))
                .collect()
        } else if let Some(prefix) = word.strip_prefix('@') {
            matching(prefix, nicks.iter().map(String::as_str))
                .into_iter()
                .map(|nick| format!("@{}", sanitize(nick)))
                .collect()
        } else {
            return EditorEvent::None;
        };
        match candidates.as_slice() {
            [] => EditorEvent::None,
            [only] => {
                self.replace_word(start, &format!("{only} "));
                EditorEvent::None
            }
            several => {
                let common = common_prefix(several);
                if common.len() > word.len() {
                    self.replace_word(start, &common);
                }
                EditorEvent::Candidates(candidates)
            }
        }
    }

    /// Replaces `start..cursor` with `replacement`, if the result fits the bound.
    fn replace_word(&mut self, start: Pos, replacement: &str) {
        let new_len = self.line.text.len() - (self.cursor.byte - start.byte) + replacement.len();
        if new_len > MAX_LINE_BYTES {
            return;
        }
        self.cursor = self.splice(start, self.cursor, replacement);
    }
}

/// The clusters of a re-segmented stretch of the line, as [`Editor::splice`] finds them.
struct Window<'a> {
    /// The whole line, already edited.
    text: &'a str,
    /// The editor's work counter.
    visited: &'a Cell<u64>,
    /// The inserted bytes: a zero-width cluster made of them is dropped.
    inserted: std::ops::Range<usize>,
    /// Where the cursor goes: the first boundary at or after this byte.
    target: usize,
    /// The new clusters, in order.
    clusters: Vec<Cluster>,
    /// The byte ranges of dropped clusters, in order.
    dropped: Vec<std::ops::Range<usize>>,
    /// The clusters, bytes and columns kept so far (relative to the window's start).
    kept: Pos,
    /// The cursor, relative to the window's start, once found.
    cursor: Option<Pos>,
}

impl Window<'_> {
    /// Adds one grapheme cluster, cut into pieces of at most [`MAX_CLUSTER_BYTES`].
    fn push(&mut self, range: std::ops::Range<usize>) {
        let mut start = range.start;
        while start < range.end {
            let mut end = (start + MAX_CLUSTER_BYTES).min(range.end);
            while !self.text.is_char_boundary(end) {
                end -= 1;
            }
            self.piece(start..end);
            start = end;
        }
    }

    fn piece(&mut self, range: std::ops::Range<usize>) {
        let text = &self.text[range.clone()];
        let width: usize = text
            .graphemes(true)
            .inspect(|_| self.visited.set(self.visited.get() + 1))
            .map(grapheme_width)
            .sum();
        let inserted = range.start < self.inserted.end && range.end > self.inserted.start;
        if width == 0 && inserted {
            self.dropped.push(range.clone());
        } else {
            self.clusters.push(Cluster {
                len: u16::try_from(text.len()).unwrap_or(u16::MAX),
                width: u16::try_from(width).unwrap_or(u16::MAX),
            });
            self.kept.index += 1;
            self.kept.byte += text.len();
            self.kept.column += usize::from(u16::try_from(width).unwrap_or(u16::MAX));
        }
        if self.cursor.is_none() && range.end >= self.target {
            self.cursor = Some(self.kept);
        }
    }
}

/// The names that start with `prefix`, ignoring case, without duplicates.
fn matching<'a>(prefix: &str, names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let prefix = prefix.to_lowercase();
    let mut found: Vec<&str> = Vec::new();
    for name in names {
        if name.to_lowercase().starts_with(&prefix) && !found.contains(&name) {
            found.push(name);
        }
    }
    found
}

/// The longest common prefix of `words`, comparing chars without case; spelled like the
/// first word.
fn common_prefix(words: &[String]) -> String {
    let Some((first, rest)) = words.split_first() else {
        return String::new();
    };
    let mut len = first.len();
    for word in rest {
        let shared: usize = first
            .chars()
            .zip(word.chars())
            .take_while(|(a, b)| a.to_lowercase().eq(b.to_lowercase()))
            .map(|(a, _)| a.len_utf8())
            .sum();
        len = len.min(shared);
    }
    first[..len].to_owned()
}

/// Display width of `text` in terminal columns, as the screen draws it.
pub fn display_width(text: &str) -> usize {
    text.graphemes(true).map(grapheme_width).sum()
}

/// Display width of one grapheme cluster, as termwiz's screen model counts it.
pub fn grapheme_width(grapheme: &str) -> usize {
    termwiz::cell::grapheme_column_width(grapheme, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent {
            key: code,
            modifiers: Modifiers::NONE,
        }
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent {
            key: KeyCode::Char(c),
            modifiers: Modifiers::CTRL,
        }
    }

    fn typed(editor: &mut Editor, text: &str) {
        for c in text.chars() {
            editor.handle_key(&key(KeyCode::Char(c)), &[]);
        }
    }

    /// Types `text`, then applies `keys`, and checks the line and the cursor (as `|`).
    fn check(text: &str, keys: &[KeyEvent], expected: &str) {
        let mut editor = Editor::new();
        typed(&mut editor, text);
        for k in keys {
            editor.handle_key(
                k,
                &["alice".to_owned(), "Alan".to_owned(), "bob".to_owned()],
            );
        }
        let mut shown = editor.text().to_owned();
        shown.insert(editor.cursor.byte, '|');
        assert_eq!(shown, expected, "typed {text:?} then {keys:?}");
    }

    #[test]
    fn editing_keys() {
        use KeyCode::*;
        check("hello", &[], "hello|");
        check("hello", &[key(LeftArrow), key(LeftArrow)], "hel|lo");
        check("hello", &[key(Home), key(RightArrow)], "h|ello");
        check("hello", &[ctrl('a'), ctrl('e')], "hello|");
        check("hello", &[key(Home), key(Delete)], "|ello");
        check("hello", &[key(Backspace)], "hell|");
        check("hello world", &[ctrl('w')], "hello |");
        check("hello world  ", &[ctrl('w')], "hello |");
        check(
            "hello world",
            &[key(LeftArrow), key(LeftArrow), ctrl('u')],
            "|ld",
        );
        check(
            "hello world",
            &[key(Home), key(RightArrow), ctrl('k')],
            "h|",
        );
        check("hello", &[ctrl('c')], "|");
        check("hello", &[key(Home), ctrl('d')], "|ello");
        check("日本語", &[key(LeftArrow), key(Backspace)], "日|語");
        check("e\u{301}x", &[key(LeftArrow), key(LeftArrow)], "|e\u{301}x");
        check("ab", &[key(LeftArrow), key(Char('\u{301}'))], "a\u{301}|b");
        check(
            "one two",
            &[KeyEvent {
                key: Char('b'),
                modifiers: Modifiers::ALT,
            }],
            "one |two",
        );
        check("x", &[key(Char('\u{7}')), key(Char('\u{202e}'))], "x|");
    }

    #[test]
    fn tab_completion() {
        let tab = || key(KeyCode::Tab);
        check("/wh", &[tab()], "/who|");
        check("/whoi", &[tab()], "/whois |");
        check("/HIS", &[tab()], "/history |");
        check("/e", &[tab()], "/exit |");
        check("/h", &[tab()], "/h|");
        check("hi @bo", &[tab()], "hi @bob |");
        check("@AL", &[tab()], "@AL|");
        check("@ali", &[tab()], "@alice |");
        check("@zed", &[tab()], "@zed|");
        check("say /wh", &[tab()], "say /wh|");
        check("plain", &[tab()], "plain|");
    }

    #[test]
    fn tab_reports_several_candidates() {
        let mut editor = Editor::new();
        typed(&mut editor, "/h");
        let event = editor.handle_key(&key(KeyCode::Tab), &[]);
        assert_eq!(
            event,
            EditorEvent::Candidates(vec!["/help".into(), "/history".into()])
        );
    }

    #[test]
    fn history_recalls_and_keeps_the_draft() {
        let mut editor = Editor::new();
        for line in ["first", "second"] {
            typed(&mut editor, line);
            assert_eq!(
                editor.handle_key(&key(KeyCode::Enter), &[]),
                EditorEvent::Submit(line.into())
            );
        }
        typed(&mut editor, "draft");
        editor.handle_key(&key(KeyCode::UpArrow), &[]);
        assert_eq!(editor.text(), "second");
        editor.handle_key(&key(KeyCode::UpArrow), &[]);
        editor.handle_key(&key(KeyCode::UpArrow), &[]);
        assert_eq!(editor.text(), "first");
        editor.handle_key(&key(KeyCode::DownArrow), &[]);
        assert_eq!(editor.text(), "second");
        editor.handle_key(&key(KeyCode::DownArrow), &[]);
        assert_eq!(editor.text(), "draft");
    }

    #[test]
    fn history_is_bounded_and_skips_blank_lines() {
        let mut editor = Editor::new();
        for i in 0..HISTORY_LINES + 10 {
            typed(&mut editor, &format!("line {i}"));
            editor.handle_key(&key(KeyCode::Enter), &[]);
        }
        typed(&mut editor, "   ");
        assert_eq!(
            editor.handle_key(&key(KeyCode::Enter), &[]),
            EditorEvent::None
        );
        assert_eq!(editor.history.len(), HISTORY_LINES);
        assert_eq!(
            editor.history.front().map(|l| l.text.as_str()),
            Some("line 10")
        );
    }

    #[test]
    fn ctrl_d_quits_only_on_an_empty_line() {
        let mut editor = Editor::new();
        assert_eq!(editor.handle_key(&ctrl('d'), &[]), EditorEvent::Quit);
        typed(&mut editor, "x");
        assert_eq!(editor.handle_key(&ctrl('d'), &[]), EditorEvent::None);
    }

    #[test]
    fn input_is_bounded() {
        let mut editor = Editor::new();
        typed(&mut editor, &"a".repeat(MAX_LINE_BYTES + 5));
        assert_eq!(editor.text().len(), MAX_LINE_BYTES);
        editor.paste("more");
        assert_eq!(editor.text().len(), MAX_LINE_BYTES);
        let mut editor = Editor::new();
        editor.paste(&"日".repeat(MAX_LINE_BYTES));
        assert!(editor.text().len() <= MAX_LINE_BYTES);
        assert_eq!(editor.text().len(), MAX_LINE_BYTES / 3 * 3);
    }

    #[test]
    fn paste_flattens_and_sanitizes() {
        let mut editor = Editor::new();
        editor.paste("a\r\nb\nc\x1b[31md\te");
        assert_eq!(editor.text(), "a b cd e");
    }

    #[test]
    fn cursor_column_counts_wide_characters() {
        let mut editor = Editor::new();
        typed(&mut editor, "a日本e\u{301}");
        assert_eq!(editor.cursor_column(), 1 + 2 + 2 + 1);
    }

    /// The clusters as a fresh segmentation would find them, for lines without flag runs or
    /// over-long clusters; and the kept sums agree with them.
    fn assert_consistent(editor: &Editor) {
        let line = &editor.line;
        let fresh: Vec<Cluster> = line
            .text
            .graphemes(true)
            .map(|g| Cluster {
                len: g.len() as u16,
                width: grapheme_width(g) as u16,
            })
            .collect();
        assert_eq!(line.clusters, fresh, "{:?}", line.text);
        assert_eq!(line.width, display_width(&line.text));
        let before = &line.text[..editor.cursor.byte];
        assert_eq!(editor.cursor.index, before.graphemes(true).count());
        assert_eq!(editor.cursor.column, display_width(before));
    }

    #[test]
    fn edits_keep_the_clusters_of_a_fresh_segmentation() {
        use KeyCode::*;
        let mut editor = Editor::new();
        typed(&mut editor, "ab 日本 e");
        for k in [
            key(Char('\u{301}')),
            key(LeftArrow),
            key(LeftArrow),
            key(Char('\u{200d}')),
            key(Backspace),
            key(Home),
            key(Delete),
            key(End),
        ] {
            editor.handle_key(&k, &[]);
            assert_consistent(&editor);
        }
        // Deleting what separates two halves of an emoji sequence joins them into one.
        let mut editor = Editor::new();
        editor.paste("👩\u{200d}x💻");
        assert_eq!(editor.line.clusters.len(), 3);
        editor.handle_key(&key(LeftArrow), &[]);
        editor.handle_key(&key(Backspace), &[]);
        assert_eq!(editor.text(), "👩\u{200d}💻");
        assert_eq!(editor.line.clusters.len(), 1);
        assert_consistent(&editor);
    }

    #[test]
    fn a_mark_with_nothing_to_sit_on_is_dropped() {
        check("", &[key(KeyCode::Char('\u{301}'))], "|");
        check(
            "ab",
            &[key(KeyCode::Home), key(KeyCode::Char('\u{301}'))],
            "|ab",
        );
        let mut editor = Editor::new();
        editor.paste("\u{301}x");
        assert_eq!(editor.text(), "x");
    }

    #[test]
    fn marks_past_the_cluster_bound_are_dropped() {
        let mut editor = Editor::new();
        typed(&mut editor, &format!("e{}", "\u{301}".repeat(100)));
        assert_eq!(editor.text(), format!("e{}", "\u{301}".repeat(31)));
        assert_eq!(editor.line.clusters.len(), 1);
        let mut pasted = Editor::new();
        pasted.paste(&format!("e{}f", "\u{301}".repeat(100)));
        assert_eq!(pasted.text(), format!("{}f", editor.text()));
        // Typing one more costs a bounded walk however many marks were refused.
        let before = editor.graphemes_visited();
        typed(&mut editor, "\u{301}");
        assert!(editor.graphemes_visited() - before <= 4);
    }

    #[test]
    fn a_flag_typed_before_a_long_run_of_flags_re_pairs_only_the_nearest() {
        let flags = "🇫🇷".repeat(100);
        let mut editor = Editor::new();
        editor.paste(&flags);
        assert_consistent(&editor);
        editor.handle_key(&key(KeyCode::Home), &[]);
        let before = editor.graphemes_visited();
        typed(&mut editor, "🇩");
        let work = editor.graphemes_visited() - before;
        assert!(work <= 2 * RESEGMENT_BYTES as u64 / 4, "{work} graphemes");
        assert_eq!(editor.text(), format!("🇩{flags}"));
        let lens: usize = editor
            .line
            .clusters
            .iter()
            .map(|c| usize::from(c.len))
            .sum();
        assert_eq!(lens, editor.text().len());
        let widths: usize = editor
            .line
            .clusters
            .iter()
            .map(|c| usize::from(c.width))
            .sum();
        assert_eq!(widths, editor.width());
        // The new indicator pairs with the first old one; the cursor is after that pair.
        assert_eq!(editor.cursor.byte, 8);
    }
}
