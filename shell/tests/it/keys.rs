//! The input line driven by raw key bytes, as a terminal sends them.

use rosewire_shell::{Action, Shell};
use unicode_segmentation::UnicodeSegmentation;

use crate::util::{config, COLS, ROWS};

/// Feeds `chunks` one `handle_input` call each; checks the input line (cursor shown as `|`)
/// and the actions.
fn check(chunks: &[&[u8]], expected: &str, actions: &[Action]) {
    let mut shell = Shell::new(config(COLS, ROWS));
    shell.set_nicks(vec!["alice".into(), "Alan".into(), "bob".into()]);
    let mut got = Vec::new();
    for chunk in chunks {
        got.extend(shell.handle_input(chunk));
    }
    let mut shown = shell.input().to_owned();
    let prompt = 2;
    let column = shell.cursor().0 - prompt;
    let byte = shown
        .grapheme_indices(true)
        .scan(0, |width, (i, g)| {
            let at = *width;
            *width += rosewire_shell::editor::grapheme_width(g);
            Some((i, at))
        })
        .find(|(_, at)| *at == column)
        .map_or(shown.len(), |(i, _)| i);
    shown.insert(byte, '|');
    assert_eq!(shown, expected, "chunks {chunks:?}");
    assert_eq!(got, actions, "chunks {chunks:?}");
}

fn submit(line: &str) -> Action {
    Action::Submit(line.to_owned())
}

#[test]
fn typing_and_moving() {
    check(&[b"hello"], "hello|", &[]);
    check(&[b"hello\x1b[D\x1b[D"], "hel|lo", &[]);
    check(&[b"hello\x1b[D\x1b[D\x1b[C"], "hell|o", &[]);
    check(&[b"hello\x1b[H"], "|hello", &[]);
    check(&[b"hello\x1b[H\x1b[F"], "hello|", &[]);
    check(&[b"hello\x1b[1~"], "|hello", &[]);
    check(&[b"hello\x1b[1~\x1b[4~"], "hello|", &[]);
    check(&[b"hello\x1bOH"], "|hello", &[]);
    check(&[b"hello\x1bOH\x1bOF"], "hello|", &[]);
    check(&[b"hello\x1bOD"], "hell|o", &[]);
    check(&[b"hello\x01"], "|hello", &[]);
    check(&[b"hello\x01\x05"], "hello|", &[]);
}

#[test]
fn deleting() {
    check(&[b"hello world\x17"], "hello |", &[]);
    check(&[b"hello world\x15"], "|", &[]);
    check(&[b"hello world\x1b[D\x1b[D\x15"], "|ld", &[]);
    check(&[b"hello world\x01\x1b[C\x0b"], "h|", &[]);
    check(&[b"hello\x7f"], "hell|", &[]);
    check(&[b"hello\x08"], "hell|", &[]);
    check(&[b"hello\x01\x1b[3~"], "|ello", &[]);
    check(&[b"hello\x03"], "|", &[]);
}

#[test]
fn enter_submits_and_up_recalls() {
    check(&[b"hi\r"], "|", &[submit("hi")]);
    check(&[b"hi\n"], "|", &[submit("hi")]);
    check(&[b"one\rtwo\r"], "|", &[submit("one"), submit("two")]);
    check(&[b"  \r"], "|", &[]);
    check(
        &[b"one\rtwo\r\x1b[A"],
        "two|",
        &[submit("one"), submit("two")],
    );
    check(
        &[b"one\rtwo\r\x1b[A\x1b[A"],
        "one|",
        &[submit("one"), submit("two")],
    );
    check(&[b"one\rhalf\x1b[A\x1b[B"], "half|", &[submit("one")]);
    check(&[b"one\r\x1bOA"], "one|", &[submit("one")]);
}

#[test]
fn ctrl_d_quits_on_an_empty_line() {
    check(&[b"\x04"], "|", &[Action::Quit]);
    check(&[b"x\x01\x04"], "|", &[]);
}

#[test]
fn tab_completes_commands_and_nicks() {
    check(&[b"/whoi\t"], "/whois |", &[]);
    check(&[b"/wh\t"], "/who|", &[]);
    check(&[b"hi @al\t"], "hi @al|", &[]);
    check(&[b"hi @ali\t"], "hi @alice |", &[]);
    check(&[b"@B\t"], "@bob |", &[]);
}

#[test]
fn bracketed_paste_is_one_line() {
    check(&[b"\x1b[200~hello\nworld\x1b[201~"], "hello world|", &[]);
    check(&[b"\x1b[200~a\r\nb\x1b[2Jc\x1b[201~"], "a bc|", &[]);
    check(
        &[b"\x1b[200~hel", b"lo\nwor", b"ld\x1b[20", b"1~!"],
        "hello world!|",
        &[],
    );
}

#[test]
fn sequences_split_across_reads() {
    check(&[b"ab\x1b", b"[D"], "a|b", &[]);
    check(&[b"ab\x1b[", b"D"], "a|b", &[]);
    check(&[b"ab\x1b[3", b"~"], "ab|", &[]);
    check(&[b"ab\x1bO", b"H"], "|ab", &[]);
    check(&[b"\xe6\x97", b"\xa5"], "日|", &[]);
}

#[test]
fn invalid_bytes_are_dropped() {
    check(&[b"a\xffb\xc3(c"], "ab(c|", &[]);
    check(&[b"\x9b31mx"], "31mx|", &[]);
}

#[test]
fn wide_characters_move_the_cursor_two_columns() {
    check(&["日本語".as_bytes()], "日本語|", &[]);
    check(&["日本語".as_bytes(), b"\x1b[D"], "日本|語", &[]);
    check(&["e\u{301}x".as_bytes(), b"\x1b[D"], "e\u{301}|x", &[]);
}

#[test]
fn tab_with_several_candidates_shows_them_in_the_status_line() {
    let mut shell = Shell::new(config(60, ROWS));
    shell.handle_input(b"/h\t");
    let status = &shell.screen_text()[usize::from(ROWS) - 2];
    assert!(status.contains("/help /history"), "{status:?}");
    shell.handle_input(b"e");
    assert_eq!(shell.input(), "/he");
    let status = &shell.screen_text()[usize::from(ROWS) - 2];
    assert!(
        !status.contains("/history"),
        "hint cleared by the next key: {status:?}"
    );
}

#[test]
fn an_unterminated_paste_is_bounded() {
    let mut shell = Shell::new(config(COLS, ROWS));
    shell.handle_input(b"\x1b[200~");
    let chunk = vec![b'x'; 32 * 1024];
    for _ in 0..4 {
        assert!(shell.handle_input(&chunk).is_empty());
    }
    // The rest of the oversized paste, newlines included, is skipped: nothing is submitted.
    assert!(shell.handle_input(b"more\rlines\r\x1b[201~").is_empty());
    assert_eq!(shell.input(), "");
    shell.handle_input(b"ok");
    assert_eq!(shell.input(), "ok");
}
