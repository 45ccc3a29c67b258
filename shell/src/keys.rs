//! A small decoder of terminal input: keys, escape sequences and bracketed paste, turned into
//! termwiz [`InputEvent`]s for the editor.
//!
//! termwiz's own `InputParser` builds a table of every key and modifier combination for each
//! parser, about 690 KiB; with one parser per session that dominated the server's memory. This
//! decoder knows only what a line editor needs and holds nothing but unfinished input.
//!
//! Decoded: printable characters (UTF-8, already validated by the caller), Enter (CR or LF),
//! Tab, Backspace (DEL and BS), Ctrl-letter, Alt-character (`ESC x`), CSI keys (arrows with
//! modifiers, Home, End, Insert, Delete, Page Up/Down in their `ESC [ n ~` and letter forms),
//! SS3 keys (`ESC O A..D/H/F`, as sent in application mode), and bracketed paste
//! (`ESC [200~ ... ESC [201~`). Unknown sequences are consumed and ignored.

use termwiz::input::{InputEvent, KeyCode, KeyEvent, Modifiers};

/// The start and end of a bracketed paste.
const PASTE_START: &[u8] = b"\x1b[200~";
const PASTE_END: &[u8] = b"\x1b[201~";
/// Longest CSI sequence accepted; a longer run without a final byte is dropped as garbage.
const MAX_CSI_LEN: usize = 32;

/// Decodes one session's input; holds an unfinished sequence or paste between calls.
#[derive(Debug, Default)]
pub struct KeyDecoder {
    /// Bytes not yet decoded (an unfinished sequence, or a paste waiting for its end).
    pending: Vec<u8>,
    /// Inside a bracketed paste: its text so far.
    paste: Option<Vec<u8>>,
}

enum Step {
    /// Consumed this many bytes, with an optional event.
    Event(usize, Option<InputEvent>),
    /// The bytes so far are the start of a sequence; wait for more.
    Incomplete,
}

fn key(code: KeyCode, modifiers: Modifiers) -> Option<InputEvent> {
    Some(InputEvent::Key(KeyEvent {
        key: code,
        modifiers,
    }))
}

impl KeyDecoder {
    pub fn new() -> KeyDecoder {
        KeyDecoder::default()
    }

    /// Bytes held back waiting for the rest of a sequence or paste.
    pub fn pending_len(&self) -> usize {
        self.pending.len() + self.paste.as_ref().map_or(0, Vec::len)
    }

    /// Decodes `bytes` (valid UTF-8) and calls `on_event` for each complete event.
    pub fn parse(&mut self, bytes: &[u8], mut on_event: impl FnMut(InputEvent)) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while start < self.pending.len() {
            let rest = &self.pending[start..];
            if let Some(paste) = &mut self.paste {
                match find(rest, PASTE_END) {
                    Some(end) => {
                        paste.extend_from_slice(&rest[..end]);
                        let text = String::from_utf8_lossy(paste).into_owned();
                        self.paste = None;
                        on_event(InputEvent::Paste(text));
                        start += end + PASTE_END.len();
                    }
                    None => {
                        // Keep a possible partial end marker; the rest is paste text.
                        let keep = partial_suffix(rest, PASTE_END);
                        paste.extend_from_slice(&rest[..rest.len() - keep]);
                        start += rest.len() - keep;
                        break;
                    }
                }
                continue;
            }
            if rest.starts_with(PASTE_START) {
                self.paste = Some(Vec::new());
                start += PASTE_START.len();
                continue;
            }
            match decode(rest) {
                Step::Event(used, event) => {
                    start += used;
                    if let Some(event) = event {
                        on_event(event);
                    }
                }
                Step::Incomplete => break,
            }
        }
        self.pending.drain(..start);
    }
}

/// Where `needle` starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The length of the longest suffix of `data` that is a proper prefix of `marker`.
fn partial_suffix(data: &[u8], marker: &[u8]) -> usize {
    (1..marker.len())
        .rev()
        .find(|&n| data.len() >= n && data.ends_with(&marker[..n]))
        .unwrap_or(0)
}

fn decode(bytes: &[u8]) -> Step {
    let Some(&first) = bytes.first() else {
        return Step::Incomplete;
    };
    match first {
        0x1b => decode_escape(bytes),
        b'\r' => {
            // CR LF from some clients is one Enter.
            let used = if bytes.get(1) == Some(&b'\n') { 2 } else { 1 };
            Step::Event(used, key(KeyCode::Enter, Modifiers::NONE))
        }
        b'\n' => Step::Event(1, key(KeyCode::Enter, Modifiers::NONE)),
        b'\t' => Step::Event(1, key(KeyCode::Tab, Modifiers::NONE)),
        0x7f | 0x08 => Step::Event(1, key(KeyCode::Backspace, Modifiers::NONE)),
        0x00 => Step::Event(1, None),
        0x01..=0x1a => Step::Event(
            1,
            key(KeyCode::Char((b'a' + first - 1) as char), Modifiers::CTRL),
        ),
        0x1c..=0x1f => Step::Event(1, None),
        _ => match first_char(bytes) {
            Some((c, len)) => Step::Event(len, key(KeyCode::Char(c), Modifiers::NONE)),
            None => Step::Incomplete,
        },
    }
}

/// The first UTF-8 character of `bytes` and its length; `None` if it is cut off.
fn first_char(bytes: &[u8]) -> Option<(char, usize)> {
    let len = match bytes[0] {
        b if b < 0x80 => 1,
        b if b >= 0xf0 => 4,
        b if b >= 0xe0 => 3,
        _ => 2,
    };
    let text = std::str::from_utf8(bytes.get(..len)?).ok()?;
    text.chars().next().map(|c| (c, len))
}

fn decode_escape(bytes: &[u8]) -> Step {
    match bytes.get(1) {
        None => Step::Incomplete,
        Some(b'[') => decode_csi(bytes),
        Some(b'O') => match bytes.get(2) {
            None => Step::Incomplete,
            Some(&b) => Step::Event(3, ss3_key(b).and_then(|k| key(k, Modifiers::NONE))),
        },
        Some(0x1b) => Step::Event(1, key(KeyCode::Escape, Modifiers::NONE)),
        Some(0x7f) => Step::Event(2, key(KeyCode::Backspace, Modifiers::ALT)),
        Some(_) => match first_char(&bytes[1..]) {
            Some((c, len)) => Step::Event(1 + len, key(KeyCode::Char(c), Modifiers::ALT)),
            None => Step::Incomplete,
        },
    }
}

fn ss3_key(b: u8) -> Option<KeyCode> {
    Some(match b {
        b'A' => KeyCode::UpArrow,
        b'B' => KeyCode::DownArrow,
        b'C' => KeyCode::RightArrow,
        b'D' => KeyCode::LeftArrow,
        b'H' => KeyCode::Home,
        b'F' => KeyCode::End,
        _ => return None,
    })
}

/// `ESC [ params final`: parameters are digits and `;`, the final byte is 0x40..=0x7e.
fn decode_csi(bytes: &[u8]) -> Step {
    let Some(end) = bytes[2..].iter().position(|b| (0x40..=0x7e).contains(b)) else {
        return if bytes.len() > MAX_CSI_LEN {
            Step::Event(bytes.len(), None)
        } else {
            Step::Incomplete
        };
    };
    let end = end + 2;
    let params = std::str::from_utf8(&bytes[2..end]).unwrap_or("");
    let mut numbers = params.split(';').map(|p| p.parse::<u32>().ok());
    let first = numbers.next().flatten();
    let modifiers = numbers
        .next()
        .flatten()
        .map_or(Modifiers::NONE, modifiers_of);
    let code = match bytes[end] {
        b'A' => Some(KeyCode::UpArrow),
        b'B' => Some(KeyCode::DownArrow),
        b'C' => Some(KeyCode::RightArrow),
        b'D' => Some(KeyCode::LeftArrow),
        b'H' => Some(KeyCode::Home),
        b'F' => Some(KeyCode::End),
        b'~' => match first {
            Some(1 | 7) => Some(KeyCode::Home),
            Some(2) => Some(KeyCode::Insert),
            Some(3) => Some(KeyCode::Delete),
            Some(4 | 8) => Some(KeyCode::End),
            Some(5) => Some(KeyCode::PageUp),
            Some(6) => Some(KeyCode::PageDown),
            _ => None,
        },
        _ => None,
    };
    Step::Event(end + 1, code.and_then(|c| key(c, modifiers)))
}

/// xterm's modifier parameter: 1 + (shift 1, alt 2, ctrl 4).
fn modifiers_of(param: u32) -> Modifiers {
    let bits = param.saturating_sub(1);
    let mut m = Modifiers::NONE;
    if bits & 1 != 0 {
        m |= Modifiers::SHIFT;
    }
    if bits & 2 != 0 {
        m |= Modifiers::ALT;
    }
    if bits & 4 != 0 {
        m |= Modifiers::CTRL;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<InputEvent> {
        let mut decoder = KeyDecoder::new();
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.parse(chunk, |e| out.push(e));
        }
        out
    }

    fn k(code: KeyCode, modifiers: Modifiers) -> InputEvent {
        InputEvent::Key(KeyEvent {
            key: code,
            modifiers,
        })
    }

    /// One row of the table: input chunks and the events they decode to.
    fn check(chunks: &[&[u8]], expected: &[InputEvent]) {
        assert_eq!(events(chunks), expected, "{chunks:?}");
    }

    #[test]
    fn the_key_table() {
        use KeyCode::*;
        let none = Modifiers::NONE;
        check(&[b"a\xc3\xa9"], &[k(Char('a'), none), k(Char('é'), none)]);
        check(
            &[b"\r", b"\n", b"\r\n"],
            &[k(Enter, none), k(Enter, none), k(Enter, none)],
        );
        check(
            &[b"\x7f\x08\t"],
            &[k(Backspace, none), k(Backspace, none), k(Tab, none)],
        );
        check(
            &[b"\x01\x17\x15\x0b"],
            &[
                k(Char('a'), Modifiers::CTRL),
                k(Char('w'), Modifiers::CTRL),
                k(Char('u'), Modifiers::CTRL),
                k(Char('k'), Modifiers::CTRL),
            ],
        );
        check(
            &[b"\x1b[A\x1b[B\x1b[C\x1b[D"],
            &[
                k(UpArrow, none),
                k(DownArrow, none),
                k(RightArrow, none),
                k(LeftArrow, none),
            ],
        );
        check(
            &[b"\x1bOH\x1bOF\x1b[H\x1b[F"],
            &[k(Home, none), k(End, none), k(Home, none), k(End, none)],
        );
        check(
            &[b"\x1b[1~\x1b[4~\x1b[3~\x1b[7~\x1b[8~"],
            &[
                k(Home, none),
                k(End, none),
                k(Delete, none),
                k(Home, none),
                k(End, none),
            ],
        );
        check(&[b"\x1b[1;5D"], &[k(LeftArrow, Modifiers::CTRL)]);
        check(
            &[b"\x1bb\x1b\x7f"],
            &[k(Char('b'), Modifiers::ALT), k(Backspace, Modifiers::ALT)],
        );
        check(&[b"\x1b[99z\x1b[M"], &[]);
    }

    #[test]
    fn sequences_split_across_reads_still_decode() {
        use KeyCode::*;
        check(&[b"\x1b", b"[", b"A"], &[k(UpArrow, Modifiers::NONE)]);
        check(&[b"\x1b[1", b";5C"], &[k(RightArrow, Modifiers::CTRL)]);
        check(&[b"\x1bO", b"H"], &[k(Home, Modifiers::NONE)]);
    }

    #[test]
    fn bracketed_paste_is_one_event_even_in_pieces() {
        check(
            &[b"\x1b[200~hello\nworld\x1b[201~"],
            &[InputEvent::Paste("hello\nworld".into())],
        );
        check(
            &[b"\x1b[20", b"0~ab\x1b[2", b"01~x"],
            &[
                InputEvent::Paste("ab".into()),
                k(KeyCode::Char('x'), Modifiers::NONE),
            ],
        );
        // Escape bytes inside a paste are text, not keys.
        check(
            &[b"\x1b[200~\x1b[A\x1b[201~"],
            &[InputEvent::Paste("\x1b[A".into())],
        );
    }

    #[test]
    fn garbage_does_not_pile_up() {
        let mut decoder = KeyDecoder::new();
        decoder.parse(b"\x1b[", |_| {});
        decoder.parse(&[b'1'; 40], |_| {});
        assert_eq!(decoder.pending_len(), 0);
    }

    #[test]
    fn a_decoder_is_small() {
        assert!(std::mem::size_of::<KeyDecoder>() < 128);
    }
}
