//! The line editor keeps its clusters up to date edit by edit (issue 6, finding 4): it must
//! behave exactly as the editor that re-segmented the whole line on every key
//! ([`Reference`]), and a key must cost the same whatever the line holds. Cost is counted in
//! graphemes visited ([`Shell::graphemes_visited`]), never in time.

use proptest::prelude::*;
use rosewire_shell::command::MAX_LINE_BYTES;
use rosewire_shell::editor::{grapheme_width, Editor};
use rosewire_shell::Shell;
use termwiz::input::{KeyCode, KeyEvent, Modifiers};
use unicode_segmentation::UnicodeSegmentation;

use crate::reference::Reference;
use crate::util::{config, COLS, ROWS};

/// One thing the user does to the line.
#[derive(Debug, Clone)]
enum Op {
    Key(KeyCode, Modifiers),
    Paste(String),
}

fn op() -> impl Strategy<Value = Op> {
    use KeyCode::*;
    let none = Modifiers::NONE;
    let ctrl = Modifiers::CTRL;
    let alt = Modifiers::ALT;
    prop_oneof![
        8 => prop_oneof![
            proptest::char::range('a', 'e'),
            Just(' '),
            Just('日'),
            Just('é'),
            Just('/'),
            Just('@'),
            Just('\u{301}'),
        ].prop_map(move |c| Op::Key(Char(c), none)),
        6 => prop_oneof![
            Just(Backspace), Just(Delete), Just(LeftArrow), Just(RightArrow), Just(Home),
            Just(End), Just(UpArrow), Just(DownArrow), Just(Enter), Just(Tab),
        ].prop_map(move |k| Op::Key(k, none)),
        2 => prop_oneof![Just('w'), Just('u'), Just('k'), Just('c'), Just('a'), Just('e')]
            .prop_map(move |c| Op::Key(Char(c), ctrl)),
        1 => prop_oneof![Just('b'), Just('f')].prop_map(move |c| Op::Key(Char(c), alt)),
        2 => prop_oneof![
            Just("e\u{301}x".to_owned()),
            Just("👩\u{200d}💻 ok".to_owned()),
            Just("two\nlines".to_owned()),
            Just("\u{1b}[31mred".to_owned()),
            Just("x".repeat(MAX_LINE_BYTES)),
            "[a-c 日]{0,12}",
        ].prop_map(Op::Paste),
    ]
}

/// The old editor's rendering of the visible part of a line.
fn reference_visible(text: &str, from: usize, room: usize) -> String {
    let mut visible = String::new();
    let mut start = 0;
    for g in text.graphemes(true) {
        let width = grapheme_width(g);
        let end = start + width;
        if width == 0 {
            continue;
        }
        if start >= from && end <= from + room {
            visible.push_str(g);
        } else if start < from && end > from {
            visible.extend(std::iter::repeat_n(' ', end - from));
        }
        start = end;
    }
    visible
}

proptest! {
    #[test]
    fn the_editor_behaves_as_the_one_that_resegmented_every_key(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        let nicks = vec!["alice".to_owned(), "Alan".to_owned(), "bob".to_owned()];
        let mut editor = Editor::new();
        let mut reference = Reference::new();
        for op in ops {
            match op {
                Op::Key(KeyCode::Char('\u{301}'), _)
                    if !reference.text[..reference.cursor]
                        .chars()
                        .next_back()
                        .is_some_and(char::is_alphabetic) =>
                {
                    // A mark with no letter before it: the old editor kept an invisible
                    // cluster (or split a word inside one); the new one drops it.
                    continue;
                }
                Op::Key(code, modifiers) => {
                    let key = KeyEvent { key: code, modifiers };
                    let got = editor.handle_key(&key, &nicks);
                    let want = reference.handle_key(&key, &nicks);
                    prop_assert_eq!(got, want, "event after {:?}", key);
                }
                Op::Paste(text) => {
                    editor.paste(&text);
                    reference.paste(&text);
                }
            }
            prop_assert_eq!(editor.text(), reference.text());
            prop_assert_eq!(editor.cursor_column(), reference.cursor_column());
            let width: usize = reference.text().graphemes(true).map(grapheme_width).sum();
            prop_assert_eq!(editor.width(), width);
            for (from, room) in [(0, 5), (0, 40), (3, 7), (editor.cursor_column(), 10)] {
                prop_assert_eq!(
                    editor.visible(from, room),
                    reference_visible(reference.text(), from, room),
                    "visible({}, {}) of {:?}", from, room, reference.text()
                );
            }
        }
    }
}

/// A shell of COLS x ROWS whose line holds `len` bytes of words, after `moves`.
fn shell_with_line(len: usize, moves: &[u8]) -> Shell {
    let mut shell = Shell::new(config(COLS, ROWS));
    let text: String = "lorem ipsum dolor sit amet "
        .chars()
        .cycle()
        .take(len)
        .collect();
    shell.handle_input(format!("\x1b[200~{text}\x1b[201~").as_bytes());
    shell.handle_input(moves);
    shell.render();
    assert_eq!(shell.input().len(), len);
    shell
}

/// The most graphemes one key visited (rendering after each), over `keys` fed one at a time,
/// twice over.
fn most_work_per_key(mut shell: Shell, keys: &[&[u8]]) -> u64 {
    let mut most = 0;
    for key in keys.iter().chain(keys) {
        let before = shell.graphemes_visited();
        shell.handle_input(key);
        shell.render();
        most = most.max(shell.graphemes_visited() - before);
    }
    most
}

/// Keys that leave the line as it was, so they can be repeated.
const TYPE_AND_ERASE: &[&[u8]] = &[b"x", b"\x7f", "日".as_bytes(), b"\x7f"];
const LEFT_AND_RIGHT: &[&[u8]] = &[b"\x1b[D", b"\x1b[C"];
const DELETE_AND_RETYPE: &[&[u8]] = &[b"\x1b[3~", b"x", b"\x1b[D"];
const HOME_AND_END: &[&[u8]] = &[b"\x01", b"\x05"];

#[test]
fn a_key_costs_the_same_on_a_full_line_as_on_a_short_one() {
    // Rendering walks the visible columns (back from the cursor to the left edge, then across
    // the screen); the editor itself only a few clusters.
    let bound = 2 * u64::from(COLS) + 16;
    let middle = "\x1b[D".repeat(8);
    for (name, keys) in [
        ("type and erase", TYPE_AND_ERASE),
        ("left and right", LEFT_AND_RIGHT),
        ("delete and retype", DELETE_AND_RETYPE),
        ("home and end", HOME_AND_END),
    ] {
        for (place, moves) in [
            ("end", &b""[..]),
            ("middle", middle.as_bytes()),
            ("start", b"\x01"),
        ] {
            let short = most_work_per_key(shell_with_line(16, moves), keys);
            let full = most_work_per_key(shell_with_line(MAX_LINE_BYTES - 4, moves), keys);
            assert!(
                full <= bound && short <= bound,
                "{name} at the {place}: {full} graphemes per key on a full line, {short} on a \
                 short one (bound {bound})"
            );
        }
    }
    // Without rendering, the editor's own work does not grow at all with the line.
    for keys in [
        TYPE_AND_ERASE,
        LEFT_AND_RIGHT,
        DELETE_AND_RETYPE,
        HOME_AND_END,
    ] {
        let work = |len: usize| {
            let mut shell = shell_with_line(len, b"\x1b[D\x1b[D");
            let before = shell.graphemes_visited();
            for key in keys {
                shell.handle_input(key);
            }
            shell.graphemes_visited() - before
        };
        assert_eq!(work(MAX_LINE_BYTES - 4), work(16), "keys {keys:?}");
    }
}

#[test]
fn typing_past_the_limit_does_no_work() {
    let mut shell = shell_with_line(MAX_LINE_BYTES, b"\x1b[D");
    let before = shell.graphemes_visited();
    for _ in 0..1000 {
        shell.handle_input(b"x");
    }
    assert_eq!(shell.graphemes_visited(), before);
    assert_eq!(shell.input().len(), MAX_LINE_BYTES);
}

#[test]
fn history_and_completion_cost_the_same_on_full_lines() {
    let full = "y".repeat(MAX_LINE_BYTES);
    let mut shell = Shell::new(config(COLS, ROWS));
    shell.set_nicks(vec!["alice".into()]);
    for _ in 0..3 {
        shell.handle_input(format!("\x1b[200~{full}\x1b[201~\r").as_bytes());
    }
    shell.handle_input(format!("\x1b[200~{full}\x1b[201~").as_bytes());
    shell.render();
    let keys: &[&[u8]] = &[b"\x1b[A", b"\x1b[A", b"\x1b[B", b"\t", b"\x1b[B", b"\t"];
    // Rendering, plus at most 64 clusters of word that Tab looks back over.
    let most = most_work_per_key(shell, keys);
    assert!(
        most <= 2 * u64::from(COLS) + 64 + 16,
        "{most} graphemes for one key"
    );
}

#[test]
fn a_paste_costs_what_it_inserts() {
    for len in [100, 1000] {
        let mut shell = shell_with_line(MAX_LINE_BYTES / 2, b"\x1b[D\x1b[D\x1b[D");
        shell.handle_input(b"\x15");
        let before = shell.graphemes_visited();
        let paste = "日本".repeat(len / 6);
        shell.handle_input(format!("\x1b[200~{paste}\x1b[201~").as_bytes());
        let work = shell.graphemes_visited() - before;
        let inserted = shell.input().len() - 3;
        assert!(
            work <= 2 * inserted as u64 + 16,
            "pasting {inserted} bytes visited {work} graphemes"
        );
    }
}
