//! `ssh host COMMAND ARGS`: plain output and meaningful exit status.

use crate::util::*;

#[test]
fn exec_commands_take_an_optional_slash() {
    let rose = Instance::start("127.0.0.4");
    let a = Key::new("a");
    let plain = rose.ssh(&a, "alice", &["help"]);
    let slash = rose.ssh(&a, "alice", &["/help"]);
    assert_exit(&plain, 0);
    assert_eq!(stdout(&plain), stdout(&slash));
    assert!(stdout(&plain).contains("/history"), "{}", stdout(&plain));
    assert!(
        !plain.stdout.contains(&0x1b),
        "exec output has no escape codes"
    );
}

#[test]
fn an_unknown_command_is_a_usage_error_naming_the_closest_command() {
    let rose = Instance::start("127.0.0.4");
    let a = Key::new("a");
    let out = rose.ssh(&a, "alice", &["whoo"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("\"whoo\"") && err.contains("did you mean who"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn a_bad_argument_is_a_usage_error_and_a_failure_is_exit_1() {
    let rose = Instance::start("127.0.0.4");
    let a = Key::new("a");
    let usage = rose.ssh(&a, "alice", &["history", "abc"]);
    assert_exit(&usage, 2);
    assert!(stderr(&usage).contains("abc"), "{}", stderr(&usage));
    let failed = rose.ssh(&a, "alice", &["keys", "remove", "SHA256:nosuchkey"]);
    assert_exit(&failed, 1);
    assert!(
        stderr(&failed).contains("SHA256:nosuchkey"),
        "{}",
        stderr(&failed)
    );
}

#[test]
fn help_for_one_command_shows_its_usage() {
    let rose = Instance::start("127.0.0.4");
    let a = Key::new("a");
    let out = rose.ssh(&a, "alice", &["help", "history"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).starts_with("usage: /history"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_chat_line_keeps_its_spacing_and_quotes() {
    let rose = Instance::start("127.0.0.4");
    let a = Key::new("a");
    // ssh joins its arguments with spaces; the text of `say` is the rest of the line as is.
    assert_exit(&rose.ssh(&a, "alice", &["say", "it's  \"quoted\""]), 0);
    let history = stdout(&rose.ssh(&a, "alice", &["history", "1", "--json"]));
    let line: serde_json::Value = serde_json::from_str(history.trim()).expect("json");
    assert_eq!(line["text"], "it's  \"quoted\"");
}
