//! The line editor as it was before it kept its clusters (issue 6, finding 4): the model
//! that `editor_model.rs` checks the new one against. It re-segments the whole line on every
//! key, which is what made typing cost grow with the line; its behaviour is the reference.

use std::collections::VecDeque;

use termwiz::input::{KeyCode, KeyEvent, Modifiers};
use unicode_segmentation::UnicodeSegmentation;

use rosewire_shell::command::{command_names, MAX_LINE_BYTES};
use rosewire_shell::editor::{grapheme_width, EditorEvent, HISTORY_LINES};
use rosewire_shell::sanitize::{is_unsafe_char, sanitize};

/// The input line, its history and the nicknames it completes.
#[derive(Debug, Default)]
pub struct Reference {
    /// The line being typed.
    pub text: String,
    /// Byte offset of the cursor in `text`, on a grapheme boundary.
    pub cursor: usize,
    /// Submitted lines, oldest first, at most [`HISTORY_LINES`].
    history: VecDeque<String>,
    /// Which history entry is shown, while browsing with Up/Down.
    history_index: Option<usize>,
    /// The half-typed line that was there before Up, restored by Down past the newest entry.
    draft: String,
}

impl Reference {
    /// An empty editor with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// The line being typed.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The display column of the cursor (wide characters count two).
    pub fn cursor_column(&self) -> usize {
        self.text[..self.cursor]
            .graphemes(true)
            .map(grapheme_width)
            .sum()
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
                if self.text.is_empty() {
                    return EditorEvent::Quit;
                }
                self.delete();
            }
            KeyCode::Char('c') if ctrl => self.clear(),
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = self.text.len(),
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
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.text.len(),
            KeyCode::UpArrow | KeyCode::ApplicationUpArrow => self.history_previous(),
            KeyCode::DownArrow | KeyCode::ApplicationDownArrow => self.history_next(),
            _ => {}
        }
        EditorEvent::None
    }

    /// Inserts pasted text: line breaks become spaces, controls are removed, and what does
    /// not fit in [`MAX_LINE_BYTES`] is dropped.
    pub fn paste(&mut self, text: &str) {
        let flat: String = text
            .replace("\r\n", "\n")
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        self.insert(&sanitize(&flat));
    }

    /// Inserts `text` at the cursor, up to the bound, skipping unsafe characters.
    fn insert(&mut self, text: &str) {
        let room = MAX_LINE_BYTES.saturating_sub(self.text.len());
        let mut fitting = String::new();
        for c in text.chars().filter(|c| !is_unsafe_char(*c)) {
            if fitting.len() + c.len_utf8() > room {
                break;
            }
            fitting.push(c);
        }
        self.text.insert_str(self.cursor, &fitting);
        self.cursor += fitting.len();
        self.snap_cursor();
    }

    /// Moves the cursor forward to a grapheme boundary, in case an insertion (a combining
    /// mark) merged with the cluster after it.
    fn snap_cursor(&mut self) {
        let cursor = self.cursor;
        let end = self.boundaries().find(|b| *b >= cursor);
        self.cursor = end.unwrap_or(self.text.len());
    }

    /// Byte offsets of every grapheme boundary, including 0 and the end.
    fn boundaries(&self) -> impl Iterator<Item = usize> + '_ {
        self.text
            .grapheme_indices(true)
            .map(|(i, _)| i)
            .chain(std::iter::once(self.text.len()))
    }

    fn previous_boundary(&self) -> usize {
        self.text[..self.cursor]
            .grapheme_indices(true)
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next_boundary(&self) -> usize {
        self.text[self.cursor..]
            .graphemes(true)
            .next()
            .map_or(self.cursor, |g| self.cursor + g.len())
    }

    fn left(&mut self) {
        self.cursor = self.previous_boundary();
    }

    fn right(&mut self) {
        self.cursor = self.next_boundary();
    }

    /// Start of the word before the cursor (skipping whitespace first), as readline's Ctrl-W.
    fn word_start_before(&self) -> usize {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end();
        trimmed
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8())
    }

    fn word_end_after(&self) -> usize {
        let after = &self.text[self.cursor..];
        let skipped = after.len() - after.trim_start().len();
        let word = &after[skipped..];
        let word_len = word.find(char::is_whitespace).unwrap_or(word.len());
        self.cursor + skipped + word_len
    }

    fn word_left(&mut self) {
        self.cursor = self.word_start_before();
    }

    fn word_right(&mut self) {
        self.cursor = self.word_end_after();
    }

    fn delete_word_before(&mut self) {
        let start = self.word_start_before();
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    fn delete_to_start(&mut self) {
        self.text.replace_range(..self.cursor, "");
        self.cursor = 0;
    }

    fn kill_to_end(&mut self) {
        self.text.truncate(self.cursor);
    }

    fn backspace(&mut self) {
        let start = self.previous_boundary();
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    fn delete(&mut self) {
        let end = self.next_boundary();
        self.text.replace_range(self.cursor..end, "");
    }

    fn clear(&mut self) {
        self.text.clear();
        self.cursor = 0;
        self.history_index = None;
    }

    fn set_text(&mut self, text: String) {
        self.text = text;
        self.cursor = self.text.len();
    }

    fn submit(&mut self) -> EditorEvent {
        let line = std::mem::take(&mut self.text);
        self.clear();
        if line.trim().is_empty() {
            return EditorEvent::None;
        }
        if self.history.back() != Some(&line) {
            if self.history.len() == HISTORY_LINES {
                self.history.pop_front();
            }
            self.history.push_back(line.clone());
        }
        EditorEvent::Submit(line)
    }

    fn history_previous(&mut self) {
        let index = match self.history_index {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.text.clone();
                self.history.len() - 1
            }
            Some(index) => index.saturating_sub(1),
        };
        self.history_index = Some(index);
        if let Some(line) = self.history.get(index) {
            self.set_text(line.clone());
        }
    }

    fn history_next(&mut self) {
        let Some(index) = self.history_index else {
            return;
        };
        if let Some(line) = self.history.get(index + 1) {
            self.history_index = Some(index + 1);
            self.set_text(line.clone());
        } else {
            self.history_index = None;
            let draft = std::mem::take(&mut self.draft);
            self.set_text(draft);
        }
    }

    /// Tab: completes the word before the cursor. `/wh` at the start of the line completes
    /// command names, `@al` anywhere completes nicknames (case-insensitively).
    fn complete(&mut self, nicks: &[String]) -> EditorEvent {
        let start = self.text[..self.cursor]
            .rfind(char::is_whitespace)
            .map_or(0, |i| i + 1);
        let word = self.text[start..self.cursor].to_owned();
        let candidates: Vec<String> = if start == 0 && word.starts_with('/') {
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
    fn replace_word(&mut self, start: usize, replacement: &str) {
        let new_len = self.text.len() - (self.cursor - start) + replacement.len();
        if new_len > MAX_LINE_BYTES {
            return;
        }
        self.text.replace_range(start..self.cursor, replacement);
        self.cursor = start + replacement.len();
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
