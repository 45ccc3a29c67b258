//! Makes untrusted text safe to put on a terminal.
//!
//! Chat lines, nicknames and file names come from other people, possibly on other
//! instances. Nothing in them may reach a terminal as a control: no colour changes, no
//! cursor moves, no window titles, no clipboard writes, no reordering of the line with
//! bidi overrides. [`sanitize`] removes all of that and keeps every printable character,
//! wide and combining ones included.
//!
//! **Invariant:** the output contains no `char::is_control` character (so no ESC, no
//! C0, no DEL, no C1) and no bidi control.

/// Removes what a terminal would interpret: C0/C1 controls (tab becomes a space), DEL,
/// ESC and whole escape sequences (CSI, OSC, DCS, ...), bidi override/isolate characters.
/// Keeps printable Unicode, including wide and combining characters.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut state = State::Text;
    for c in text.chars() {
        state = state.next(c, &mut out);
    }
    out
}

/// Makes one line of JSON safe for a terminal without changing what it means: every
/// character [`sanitize`] would drop (controls that JSON allows raw, such as DEL, C1 and bidi
/// controls; `serde_json` already escapes C0) is written as a `\uXXXX` escape. All of them are
/// in the Basic Multilingual Plane, and outside strings JSON holds only ASCII, so the result
/// parses to the same value.
pub fn escape_unsafe_in_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if is_unsafe_char(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `c` would be dropped by [`sanitize`] outside any escape sequence.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// Bidi embedding, override and isolate controls (and the invisible direction marks),
/// which can make a line display in a different order than it was written.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

const ESC: char = '\u{1b}';
const BEL: char = '\u{07}';
/// The 8-bit String Terminator.
const ST: char = '\u{9c}';

/// Where the scanner is: in plain text or inside some escape sequence that is being dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Plain text.
    Text,
    /// After ESC.
    Escape,
    /// After ESC and one or more intermediate bytes (0x20..=0x2F), e.g. `ESC ( B`.
    EscapeIntermediate,
    /// Inside a CSI sequence (`ESC [` or U+009B), up to its final byte.
    Csi,
    /// Inside a control string (OSC, DCS, SOS, PM, APC), up to BEL or ST.
    ControlString,
    /// After ESC inside a control string: `ESC \` ends it.
    ControlStringEscape,
}

impl State {
    /// Consumes `c`, appending to `out` what is printable, and returns the next state.
    fn next(self, c: char, out: &mut String) -> State {
        match self {
            State::Text => text(c, out),
            State::Escape => match c {
                '[' => State::Csi,
                ']' | 'P' | 'X' | '^' | '_' => State::ControlString,
                '\u{20}'..='\u{2f}' => State::EscapeIntermediate,
                '\u{30}'..='\u{7e}' => State::Text,
                // ESC followed by something that cannot continue it: drop the ESC only.
                _ => text(c, out),
            },
            State::EscapeIntermediate => match c {
                '\u{20}'..='\u{2f}' => State::EscapeIntermediate,
                '\u{30}'..='\u{7e}' => State::Text,
                _ => text(c, out),
            },
            State::Csi => match c {
                // Parameter and intermediate bytes.
                '\u{20}'..='\u{3f}' => State::Csi,
                // The final byte ends the sequence.
                '\u{40}'..='\u{7e}' => State::Text,
                // Anything else aborts the sequence and is treated as text.
                _ => text(c, out),
            },
            State::ControlString => match c {
                BEL | ST => State::Text,
                ESC => State::ControlStringEscape,
                _ => State::ControlString,
            },
            State::ControlStringEscape => match c {
                '\\' => State::Text,
                // A new escape sequence implicitly ends the string.
                _ => State::Escape.next(c, out),
            },
        }
    }
}

/// Handles `c` in plain text.
fn text(c: char, out: &mut String) -> State {
    match c {
        ESC => State::Escape,
        '\u{9b}' => State::Csi,
        // 8-bit DCS, SOS, OSC, PM, APC.
        '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => State::ControlString,
        '\t' => {
            out.push(' ');
            State::Text
        }
        c if is_unsafe_char(c) => State::Text,
        c => {
            out.push(c);
            State::Text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(sanitize(input), expected, "input {input:?}");
    }

    #[test]
    fn strips_escape_sequences_and_controls() {
        check("plain text", "plain text");
        check("\x1b[31mred\x1b[0m", "red");
        check("\x1b[1;38;2;255;0;0mtrue\x1b[m", "true");
        check("a\x1b[2Jb", "ab");
        check("\x1b[?1049h\x1b[Hx", "x");
        check("\x1b]0;evil title\x07after", "after");
        check("\x1b]0;evil title\x1b\\after", "after");
        check("\x1b]52;c;ZXZpbA==\x07paste", "paste");
        check("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link");
        check("\x1bPq#0;2;0;0;0\x1b\\dcs", "dcs");
        check("\x1b_apc\x1b\\ok", "ok");
        check("\x1b^pm\u{9c}ok", "ok");
        check("\x1bXsos\x07ok", "ok");
        check("\x1b(Bcharset", "charset");
        check("\x1b7save\x1b8", "save");
        check("\x1bcreset", "reset");
        check("\u{9b}31mred", "red");
        check("\u{9d}0;title\u{9c}ok", "ok");
        check("\u{85}next\u{80}line", "nextline");
        check("end\x1b", "end");
        check("end\x1b[", "end");
        check("\x1b]unterminated", "");
        check("\x1b\x1b[31mx", "x");
        check("\x1b]0;t\x1b[31mx", "x");
        check("\x1b[31\nx", "x");
    }

    #[test]
    fn strips_c0_del_and_bidi() {
        check("a\tb", "a b");
        check("nul\0byte", "nulbyte");
        check("bell\x07 back\x08space\x7f", "bell backspace");
        check("line\r\nbreak", "linebreak");
        check("\u{202E}txt.exe", "txt.exe");
        check("a\u{2066}b\u{2069}c\u{202A}d\u{202C}", "abcd");
        check("\u{200F}rtl mark", "rtl mark");
    }

    #[test]
    fn keeps_printable_unicode() {
        check("日本語", "日本語");
        check("e\u{301}", "e\u{301}");
        check(
            "emoji 🎉 and ZWJ 👩\u{200D}💻",
            "emoji 🎉 and ZWJ 👩\u{200D}💻",
        );
        check("عربى", "عربى");
        check("[brackets] ~tilde~", "[brackets] ~tilde~");
    }

    #[test]
    fn json_keeps_its_value_and_loses_its_controls() {
        let value = "name\u{202e}gpj.exe \u{7f}\u{9b}31m \u{1b}[2J \u{2066}x\u{2069} 日本";
        let line = format!("{{\"name\":{}}}", serde_json_string(value));
        let safe = escape_unsafe_in_json(&line);
        assert!(!safe.chars().any(is_unsafe_char), "{safe}");
        assert!(safe.contains("\\u202e"), "{safe}");
        assert_eq!(
            safe,
            "{\"name\":\"name\\u202egpj.exe \\u007f\\u009b31m \\u001b[2J \\u2066x\\u2069 日本\"}"
        );
    }

    /// A JSON string literal as serde_json writes it (C0 escaped, the rest raw).
    fn serde_json_string(value: &str) -> String {
        let mut out = String::from("\"");
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    proptest! {
        #[test]
        fn output_never_contains_controls(input in any::<String>()) {
            let out = sanitize(&input);
            prop_assert!(!out.chars().any(is_unsafe_char), "{:?} -> {:?}", input, out);
        }

        #[test]
        fn output_never_contains_controls_from_escape_heavy_input(
            input in proptest::collection::vec(
                prop_oneof![
                    Just('\u{1b}'), Just('['), Just(']'), Just('\u{7}'), Just('\\'),
                    Just('\u{9b}'), Just('\u{9c}'), Just('P'), Just('\t'), Just('a'),
                    Just('1'), Just(';'), Just('\u{202e}'), any::<char>(),
                ],
                0..64,
            )
        ) {
            let input: String = input.into_iter().collect();
            let out = sanitize(&input);
            prop_assert!(!out.chars().any(is_unsafe_char), "{:?} -> {:?}", input, out);
        }

        #[test]
        fn safe_text_is_unchanged(input in "[a-zA-Z0-9 .,!?日本語é]{0,40}") {
            prop_assert_eq!(sanitize(&input), input);
        }
    }
}
