//! The interactive shell end to end: a real `ssh -tt` in a real terminal (tmux).

use crate::util::*;

/// The last non-blank row of a captured screen: where the input line is.
fn input_row(screen: &str) -> String {
    screen
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_typed_line_appears_in_the_shell() {
    let rose = Instance::start("127.0.0.6");
    let a = Key::new("a");
    let tmux = Tmux::start(&rose.ssh_shell_line(&a, "alice", "-tt"), 100, 30);
    tmux.expect("the welcome", |s| s.contains("Welcome to RoseWire"));
    tmux.type_text("hello from tmux");
    tmux.send_keys(&["Enter"]);
    tmux.expect("alice's own line", |s| {
        s.contains("<alice> hello from tmux")
    });
    let history = stdout(&rose.ssh(&a, "alice", &["history"]));
    assert!(history.contains("hello from tmux"), "{history}");
}

#[test]
fn an_incoming_line_does_not_break_the_half_typed_input() {
    let rose = Instance::start("127.0.0.6");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let tmux = Tmux::start(&rose.ssh_shell_line(&a, "alice", "-tt"), 100, 30);
    tmux.expect("the welcome", |s| s.contains("Welcome to RoseWire"));
    tmux.type_text("half typed");
    tmux.expect("the half-typed input", |s| {
        input_row(s).contains("half typed")
    });
    for i in 0..3 {
        assert_exit(
            &rose.ssh(&b, "bob", &["say", &format!("interruption{i}")]),
            0,
        );
    }
    let screen = tmux.expect("bob's lines", |s| s.contains("<bob> interruption2"));
    let row = input_row(&screen);
    assert!(
        row.contains("half typed"),
        "input row garbled: {row:?}\n{screen}"
    );
    assert!(
        !row.contains("interruption"),
        "a chat line landed in the input row: {row:?}"
    );
    // The input continues where it was and is sent whole.
    tmux.type_text(" and finished");
    tmux.send_keys(&["Enter"]);
    tmux.expect("the finished line", |s| {
        s.contains("<alice> half typed and finished")
    });
}

#[test]
fn line_editing_and_completion_work_through_a_real_terminal() {
    let rose = Instance::start("127.0.0.6");
    let a = Key::new("a");
    let tmux = Tmux::start(&rose.ssh_shell_line(&a, "alice", "-tt"), 100, 30);
    tmux.expect("the welcome", |s| s.contains("Welcome to RoseWire"));
    // Type a word, delete it with Ctrl-W, type another; move Home and insert.
    tmux.type_text("wrong");
    tmux.send_keys(&["C-w"]);
    tmux.type_text("world");
    tmux.send_keys(&["Home"]);
    tmux.type_text("hello ");
    tmux.send_keys(&["Enter"]);
    tmux.expect("the edited line", |s| s.contains("<alice> hello world"));
    // Tab completes a command.
    tmux.type_text("/wh");
    tmux.send_keys(&["Tab"]);
    tmux.expect("the completed command", |s| input_row(s).contains("/who"));
    tmux.send_keys(&["Enter"]);
    tmux.expect("the who output", |s| {
        s.contains(&format!("@alice@{}", rose.domain))
    });
    // Up recalls the previous line.
    tmux.send_keys(&["Up"]);
    tmux.expect("the recalled line", |s| input_row(s).contains("/who"));
}

#[test]
fn a_resize_keeps_the_input_line_at_the_bottom() {
    let rose = Instance::start("127.0.0.6");
    let a = Key::new("a");
    let tmux = Tmux::start(&rose.ssh_shell_line(&a, "alice", "-tt"), 100, 30);
    tmux.expect("the welcome", |s| s.contains("Welcome to RoseWire"));
    tmux.type_text("still here");
    tmux.resize(60, 15);
    let screen = tmux.expect("the input after resize", |s| {
        s.lines().count() <= 15 && input_row(s).contains("still here")
    });
    assert!(screen.lines().all(|l| l.chars().count() <= 60), "{screen}");
}

#[test]
fn get_in_the_interactive_shell_saves_into_downloads_in_the_background() {
    let rose = Instance::start("127.0.0.6");
    let (a, b) = (Key::new("a"), Key::new("b"));
    let local = tempfile::tempdir().unwrap();
    let path = local.path().join("x");
    let bytes = crate::library::content(2 << 20, 9);
    std::fs::write(&path, &bytes).unwrap();
    crate::library::upload(&rose, &a, "alice", &[(&path, "tape.flac")]);
    assert_exit(&rose.ssh(&a, "alice", &["share", "tape.flac"]), 0);
    let id = blake3::hash(&bytes).to_hex().to_string();

    let tmux = Tmux::start(&rose.ssh_shell_line(&b, "bob", "-tt"), 120, 30);
    tmux.expect("the welcome", |s| s.contains("Welcome to RoseWire"));
    tmux.type_text(&format!("/get {}", &id[..12]));
    tmux.send_keys(&["Enter"]);
    tmux.expect("the outcome", |s| {
        s.contains("saved tape.flac (2.0 MiB) in downloads/tape.flac")
    });
    // bob is the second user: his tree is users/2.
    let saved = std::fs::read(rose.data_dir().join("users/2/downloads/tape.flac")).unwrap();
    assert!(saved == bytes, "downloaded bytes differ");
    // The shell stays usable while and after a transfer runs.
    tmux.type_text("still here");
    tmux.send_keys(&["Enter"]);
    tmux.expect("bob's line", |s| s.contains("<bob> still here"));
}

#[test]
fn page_up_brings_back_chat_that_help_pushed_off_the_screen() {
    let rose = Instance::start("127.0.0.6");
    let a = Key::new("a");
    // 10 rows of messages: /help alone fills them several times over.
    let tmux = Tmux::start(&rose.ssh_shell_line(&a, "alice", "-tt"), 100, 12);
    tmux.expect("the welcome", |s| s.contains("Welcome to RoseWire"));
    tmux.type_text("an older line");
    tmux.send_keys(&["Enter"]);
    tmux.expect("alice's line", |s| s.contains("<alice> an older line"));
    tmux.type_text("/help");
    tmux.send_keys(&["Enter"]);
    let mut screen = tmux.expect("the end of /help", |s| {
        s.contains("/quit") && !s.contains("an older line")
    });
    // Each PgUp shows an earlier page; the chat line is on one of them, below the welcome.
    let mut pages = 0;
    while !screen.contains("<alice> an older line") {
        assert!(
            pages < 10,
            "no page showed the chat line; last screen:\n{screen}"
        );
        let before = screen.clone();
        tmux.send_keys(&["PPage"]);
        screen = tmux.expect("an earlier page", |s| s != before);
        pages += 1;
    }
    assert!(screen.contains("more below (PgDn)"), "{screen}");
    // Sending a line comes back to the newest messages.
    tmux.type_text("back at the bottom");
    tmux.send_keys(&["Enter"]);
    tmux.expect("the newest line and no marker", |s| {
        s.contains("<alice> back at the bottom") && !s.contains("more below")
    });
}
