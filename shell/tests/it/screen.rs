//! What the client's terminal shows: layout, incremental renders, resize, hostile text.

use rosewire_shell::{Message, Shell, Status};

use crate::util::{bottom_row, config, session, sync, COLS, ROWS};
use crate::vt::Vt;

#[test]
fn first_render_clears_and_enables_bracketed_paste() {
    let mut shell = Shell::new(config(COLS, ROWS));
    let bytes = shell.render();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("\x1b[?2004h"), "{text:?}");
    assert!(text.contains("\x1b[2J"), "{text:?}");
    let mut vt = Vt::new(COLS.into(), ROWS.into());
    vt.feed(&bytes);
    assert!(vt.bracketed_paste);
    assert_eq!(vt.text(), shell.screen_text());
}

#[test]
fn layout_has_messages_status_and_prompt() {
    let (mut shell, mut vt) = session();
    shell.push(Message::chat(45_296, "bob", "hello"));
    shell.push(Message::notice(45_300, "carol joined"));
    sync(&mut shell, &mut vt);
    let screen: Vec<String> = shell
        .screen_text()
        .iter()
        .map(|r| r.trim_end().to_owned())
        .collect();
    let rows = usize::from(ROWS);
    assert_eq!(screen.len(), rows);
    assert_eq!(screen[rows - 4], "[12:34] <bob> hello");
    assert_eq!(screen[rows - 3], "[12:35] -- carol joined");
    assert_eq!(screen[rows - 2], " rose.example | 3 online | alice");
    assert_eq!(screen[rows - 1], ">");
    assert!(screen[..rows - 4].iter().all(String::is_empty));
}

#[test]
fn render_is_empty_when_nothing_changed() {
    let (mut shell, mut vt) = session();
    assert!(shell.render().is_empty());
    shell.handle_input(b"x");
    assert!(!sync(&mut shell, &mut vt).is_empty());
    assert!(shell.render().is_empty());
    shell.set_status(Status {
        instance: "rose.example".into(),
        online: 3,
        ..Status::default()
    });
    assert!(shell.render().is_empty());
}

#[test]
fn a_message_while_typing_leaves_the_input_line_alone() {
    let (mut shell, mut vt) = session();
    shell.handle_input(b"half-typed li");
    sync(&mut shell, &mut vt);
    shell.push(Message::chat(0, "bob", "interrupting you"));
    let bytes = sync(&mut shell, &mut vt);
    assert_eq!(shell.input(), "half-typed li");
    assert_eq!(bottom_row(&shell), "> half-typed li");
    assert!(
        shell.screen_text()[usize::from(ROWS) - 3].starts_with("[00:00] <bob> interrupting you")
    );
    assert_eq!(
        shell.cursor(),
        (2 + "half-typed li".len(), usize::from(ROWS) - 1)
    );
    // Small: a scroll and the new row, not a repaint of the screen.
    assert!(
        bytes.len() < 200,
        "{} bytes: {:?}",
        bytes.len(),
        String::from_utf8_lossy(&bytes)
    );
    assert!(
        !String::from_utf8_lossy(&bytes).contains("half-typed"),
        "input line repainted"
    );
}

#[test]
fn escape_sequences_from_peers_never_reach_the_terminal() {
    let (mut shell, mut vt) = session();
    shell.push(Message::chat(
        0,
        "ev\x1b]0;pwned\x07il",
        "before\x1b[2Jafter\x1b[31m\u{9b}2J",
    ));
    let bytes = sync(&mut shell, &mut vt);
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("\x1b[2J"), "{text:?}");
    assert!(!text.contains("\x1b]"), "{text:?}");
    assert!(!text.contains('\u{9b}'), "{text:?}");
    assert!(text.contains("beforeafter"), "{text:?}");
    assert!(text.contains("evil"), "{text:?}");
}

#[test]
fn long_messages_wrap_and_scroll() {
    let (mut shell, mut vt) = session();
    for i in 0..20 {
        shell.push(Message::chat(
            0,
            "bob",
            &format!("line {i} {}", "word ".repeat(i % 9)),
        ));
        sync(&mut shell, &mut vt);
    }
    shell.push(Message::output(0, &"日本語".repeat(20)));
    sync(&mut shell, &mut vt);
    let screen = shell.screen_text();
    let rows = usize::from(ROWS);
    assert_eq!(screen[rows - 5], "日本語".repeat(7)[..3 * 20], "{screen:?}");
    assert!(screen[rows - 3].starts_with("本語"), "{screen:?}");
}

#[test]
fn resize_repaints_at_the_new_size_and_keeps_the_input() {
    let (mut shell, mut vt) = session();
    shell.push(Message::chat(
        0,
        "bob",
        "a message that will need wrapping when narrow",
    ));
    shell.handle_input(b"draft");
    sync(&mut shell, &mut vt);
    shell.resize(20, 6);
    vt.resize(20, 6);
    let bytes = sync(&mut shell, &mut vt);
    assert!(String::from_utf8_lossy(&bytes).contains("\x1b[2J"));
    let screen = shell.screen_text();
    assert_eq!(screen.len(), 6);
    assert!(screen
        .iter()
        .all(|row| rosewire_shell::editor::display_width(row) == 20));
    assert_eq!(shell.input(), "draft");
    assert_eq!(bottom_row(&shell), "> draft");
}

#[test]
fn long_input_scrolls_sideways_and_keeps_the_cursor_visible() {
    let (mut shell, mut vt) = session();
    let long: String = (0..60).map(|i| char::from(b'a' + i % 26)).collect();
    shell.handle_input(long.as_bytes());
    sync(&mut shell, &mut vt);
    let cols = usize::from(COLS);
    assert_eq!(shell.cursor(), (cols - 1, usize::from(ROWS) - 1));
    assert!(bottom_row(&shell).ends_with(&long[long.len() - (cols - 3)..]));
    shell.handle_input(b"\x01");
    sync(&mut shell, &mut vt);
    assert_eq!(shell.cursor().0, 2);
    assert!(bottom_row(&shell).starts_with("> abcdef"));
}

#[test]
fn wide_input_places_the_cursor_by_width() {
    let (mut shell, mut vt) = session();
    shell.handle_input("日本".as_bytes());
    sync(&mut shell, &mut vt);
    assert_eq!(shell.cursor().0, 2 + 4);
    shell.handle_input(b"\x1b[D");
    sync(&mut shell, &mut vt);
    assert_eq!(shell.cursor().0, 2 + 2);
}

#[test]
fn ctrl_l_repaints_everything() {
    let (mut shell, mut vt) = session();
    shell.handle_input(b"\x0c");
    let bytes = sync(&mut shell, &mut vt);
    assert!(String::from_utf8_lossy(&bytes).contains("\x1b[2J"));
}

#[test]
fn farewell_restores_the_terminal() {
    let (mut shell, mut vt) = session();
    let bytes = shell.farewell();
    vt.feed(&bytes);
    assert!(!vt.bracketed_paste);
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        format!("\x1b[?2004l\x1b[r\x1b[0m\x1b[{ROWS};1H\r\n")
    );
}
