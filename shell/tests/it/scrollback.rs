//! Paging back through the message area: PgUp and PgDn fed as raw key bytes.

use std::sync::Arc;

use rosewire_shell::scrollback::{MAX_PRIVATE_BYTES, SCROLLBACK_MESSAGES};
use rosewire_shell::{Action, Message, Shell};

use crate::util::{session, sync, ROWS};
use crate::vt::Vt;

const PG_UP: &[u8] = b"\x1b[5~";
const PG_DN: &[u8] = b"\x1b[6~";
/// Shift-PgUp as xterm sends it when it does not keep the key for its own scrollback.
const SHIFT_PG_UP: &[u8] = b"\x1b[5;2~";

/// Rows of the message area (the screen above the status line), without trailing blanks.
fn area(shell: &Shell) -> Vec<String> {
    let text = shell.screen_text();
    text[..usize::from(ROWS) - 2]
        .iter()
        .map(|row| row.trim_end().to_owned())
        .collect()
}

/// Checks the message area, row by row.
#[track_caller]
fn check(shell: &Shell, expected: &[&str]) {
    assert_eq!(area(shell), expected, "message area");
}

/// A chat line as the server shares it with every session.
fn line(n: usize) -> Arc<Message> {
    Arc::new(Message::chat(0, "bob", &format!("line {n:04}")))
}

/// A session that has rendered `count` chat lines, `line 0001` to `line {count}`.
fn with_lines(count: usize) -> (Shell, Vt) {
    let (mut shell, mut vt) = session();
    for n in 1..=count {
        shell.push_shared(line(n));
    }
    sync(&mut shell, &mut vt);
    (shell, vt)
}

/// Feeds `keys` and brings the terminal up to date; returns the actions.
fn keys(shell: &mut Shell, vt: &mut Vt, keys: &[u8]) -> Vec<Action> {
    let actions = shell.handle_input(keys);
    sync(shell, vt);
    actions
}

#[test]
fn page_up_shows_older_lines_and_page_down_comes_back() {
    let (mut shell, mut vt) = with_lines(30);
    let bob = |n: usize| format!("[00:00] <bob> line {n:04}");
    let newest: Vec<String> = (25..=30).map(bob).collect();
    assert_eq!(area(&shell), newest);

    // The top row of the page becomes its bottom row, above the marker.
    keys(&mut shell, &mut vt, PG_UP);
    let mut expected: Vec<String> = (21..=25).map(bob).collect();
    expected.push("-- 5 more below (PgDn) --".into());
    assert_eq!(area(&shell), expected);
    assert!(shell.scrolled_back());

    keys(&mut shell, &mut vt, PG_UP);
    let mut expected: Vec<String> = (17..=21).map(bob).collect();
    expected.push("-- 9 more below (PgDn) --".into());
    assert_eq!(area(&shell), expected);

    keys(&mut shell, &mut vt, PG_DN);
    keys(&mut shell, &mut vt, PG_DN);
    let mut expected: Vec<String> = (25..=29).map(bob).collect();
    expected.push("-- 1 more below (PgDn) --".into());
    assert_eq!(area(&shell), expected);

    keys(&mut shell, &mut vt, PG_DN);
    assert_eq!(area(&shell), newest);
    assert!(!shell.scrolled_back());
    // Another PgDn at the bottom changes nothing.
    assert!(shell.handle_input(PG_DN).is_empty());
    assert!(shell.render().is_empty());
}

#[test]
fn shift_page_up_pages_too() {
    let (mut shell, mut vt) = with_lines(30);
    keys(&mut shell, &mut vt, SHIFT_PG_UP);
    assert!(shell.scrolled_back());
    assert!(area(&shell)[0].ends_with("line 0021"));
}

#[test]
fn paging_back_reaches_the_last_thousand_lines_and_no_further() {
    let total = SCROLLBACK_MESSAGES + 200;
    let (mut shell, mut vt) = with_lines(total);
    assert_eq!(shell.kept_messages(), SCROLLBACK_MESSAGES);
    // Far more pages than there are lines: it stops at the oldest line kept.
    keys(&mut shell, &mut vt, &PG_UP.repeat(SCROLLBACK_MESSAGES));
    let oldest = total - SCROLLBACK_MESSAGES + 1;
    check(
        &shell,
        &[
            "[00:00] <bob> line 0201",
            "[00:00] <bob> line 0202",
            "[00:00] <bob> line 0203",
            "[00:00] <bob> line 0204",
            "[00:00] <bob> line 0205",
            "-- 995 more below (PgDn) --",
        ],
    );
    assert_eq!(oldest, 201);
    // Line 1,001 back is gone for good.
    let gone = format!("line {:04}", oldest - 1);
    assert!(shell.screen_text().iter().all(|row| !row.contains(&gone)));
    // Paging forward visits every kept line, in order, and ends at the newest.
    let mut seen: Vec<usize> = Vec::new();
    loop {
        let numbers = area(&shell)
            .iter()
            .filter_map(|row| row.strip_prefix("[00:00] <bob> line "))
            .filter_map(|n| n.parse::<usize>().ok())
            .collect::<Vec<_>>();
        for n in numbers {
            if seen.last() < Some(&n) {
                seen.push(n);
            }
        }
        if !shell.scrolled_back() {
            break;
        }
        keys(&mut shell, &mut vt, PG_DN);
    }
    assert_eq!(seen, (oldest..=total).collect::<Vec<_>>());
}

#[test]
fn a_thousand_long_shared_lines_cost_a_session_no_private_bytes() {
    let (mut shell, mut vt) = session();
    let long = "x".repeat(rosewire_shell::command::MAX_LINE_BYTES);
    let shared: Vec<Arc<Message>> = (0..SCROLLBACK_MESSAGES)
        .map(|_| Arc::new(Message::chat(0, "bob", &long)))
        .collect();
    for message in &shared {
        shell.push_shared(message.clone());
    }
    sync(&mut shell, &mut vt);
    assert_eq!(shell.kept_messages(), SCROLLBACK_MESSAGES);
    assert_eq!(shell.private_bytes(), 0);
    // The session holds the very messages it was given, not copies.
    assert!(shared.iter().all(|m| Arc::strong_count(m) == 2));
}

#[test]
fn a_shared_line_with_controls_is_shown_sanitized() {
    let (mut shell, mut vt) = session();
    shell.push_shared(Arc::new(Message::chat(0, "bob", "hi\x1b[2Jthere")));
    let bytes = sync(&mut shell, &mut vt);
    assert!(!String::from_utf8_lossy(&bytes).contains("\x1b[2J"));
    assert_eq!(area(&shell).last().unwrap(), "[00:00] <bob> hithere");
}

#[test]
fn help_output_does_not_push_the_chat_away() {
    let (mut shell, mut vt) = with_lines(3);
    shell.handle_input(b"/help");
    let actions = keys(&mut shell, &mut vt, b"\r");
    assert_eq!(actions, [Action::Submit("/help".into())]);
    // What the server sends back for /help: more lines than the screen holds.
    for n in 0..40 {
        shell.push(Message::output(0, &format!("  /help line {n}")));
    }
    sync(&mut shell, &mut vt);
    assert!(area(&shell).iter().all(|row| !row.contains("<bob>")));
    for _ in 0..20 {
        if area(&shell).iter().any(|row| row.contains("line 0003")) {
            break;
        }
        keys(&mut shell, &mut vt, PG_UP);
    }
    let shown = area(&shell);
    assert!(
        shown.contains(&"[00:00] <bob> line 0003".to_owned()),
        "{shown:#?}"
    );
}

#[test]
fn lines_arriving_while_paged_back_leave_the_view_alone() {
    let (mut shell, mut vt) = with_lines(30);
    keys(&mut shell, &mut vt, PG_UP);
    let before = area(&shell);
    for n in 31..=33 {
        shell.push_shared(line(n));
    }
    sync(&mut shell, &mut vt);
    let after = area(&shell);
    assert_eq!(after[..5], before[..5]);
    assert_eq!(after[5], "-- 8 more below (PgDn) --");
}

#[test]
fn enter_comes_back_to_the_newest_lines() {
    let (mut shell, mut vt) = with_lines(30);
    keys(&mut shell, &mut vt, &PG_UP.repeat(3));
    // Typing keeps the view where it is; sending the line comes back.
    keys(&mut shell, &mut vt, b"hello");
    assert!(shell.scrolled_back());
    let actions = keys(&mut shell, &mut vt, b"\r");
    assert_eq!(actions, [Action::Submit("hello".into())]);
    assert!(!shell.scrolled_back());
    assert_eq!(area(&shell)[5], "[00:00] <bob> line 0030");
}

#[test]
fn pages_move_by_rows_through_wrapped_messages() {
    let (mut shell, mut vt) = session();
    // Each message wraps to 3 rows of the 40-column screen.
    for n in 1..=6 {
        let text = format!("m{n} {}", "w".repeat(80));
        shell.push(Message::output(0, &text));
    }
    sync(&mut shell, &mut vt);
    keys(&mut shell, &mut vt, PG_UP);
    // 5 rows up from the last row: the bottom is m5's first row, m3's last at the top.
    let shown = area(&shell);
    assert_eq!(shown[0], "www");
    assert!(shown[1].starts_with("m4 "), "{shown:#?}");
    assert!(shown[4].starts_with("m5 "), "{shown:#?}");
    assert_eq!(shown[5], "-- 2 more below (PgDn) --");
    keys(&mut shell, &mut vt, &PG_UP.repeat(10));
    let shown = area(&shell);
    assert!(shown[0].starts_with("m1 "), "{shown:#?}");
    keys(&mut shell, &mut vt, &PG_DN.repeat(10));
    assert!(!shell.scrolled_back());
    assert!(area(&shell)[3].starts_with("m6 "));
}

#[test]
fn a_resize_while_paged_back_keeps_the_place() {
    let (mut shell, mut vt) = with_lines(30);
    keys(&mut shell, &mut vt, PG_UP);
    shell.resize(60, 12);
    vt.resize(60, 12);
    sync(&mut shell, &mut vt);
    let text = shell.screen_text();
    let rows: Vec<&str> = text[..10].iter().map(|r| r.trim_end()).collect();
    assert_eq!(rows[8], "[00:00] <bob> line 0025");
    assert_eq!(rows[9], "-- 5 more below (PgDn) --");
}

#[test]
fn page_up_does_nothing_when_everything_fits() {
    let (mut shell, mut vt) = with_lines(3);
    keys(&mut shell, &mut vt, PG_UP);
    assert!(!shell.scrolled_back());
}

#[test]
fn own_output_is_bounded_in_bytes_and_goes_before_the_chat() {
    let (mut shell, mut vt) = with_lines(1);
    let text = "o".repeat(200);
    for _ in 0..SCROLLBACK_MESSAGES - 1 {
        shell.push(Message::output(0, &text));
    }
    sync(&mut shell, &mut vt);
    assert!(shell.private_bytes() <= MAX_PRIVATE_BYTES);
    assert!(shell.kept_messages() < SCROLLBACK_MESSAGES);
    keys(&mut shell, &mut vt, &PG_UP.repeat(SCROLLBACK_MESSAGES));
    assert_eq!(area(&shell)[0], "[00:00] <bob> line 0001");
}
