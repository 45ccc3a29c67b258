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
    let help = stdout(&plain);
    assert!(help.contains("  history [N] [--json]"), "{help}");
    assert!(
        !help.contains("/history"),
        "exec help names exec commands: {help}"
    );
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
        stdout(&out).starts_with("usage: history [N]"),
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

#[test]
fn exec_errors_and_hints_name_exec_commands_and_search_has_no_shell_hint() {
    let rose = Instance::start("127.0.0.4");
    let a = Key::new("a");
    // An error of the grammar, and one of a command, both worded for exec form.
    let usage = rose.ssh(&a, "alice", &["history", "0"]);
    assert_exit(&usage, 2);
    let err = stderr(&usage);
    assert!(err.starts_with("rosewire: history: "), "{err}");
    assert!(err.contains("usage: history [N]"), "{err}");
    assert!(!err.contains("/history"), "{err}");
    let get = rose.ssh(&a, "alice", &["get", "3"]);
    assert_exit(&get, 1);
    let err = stderr(&get);
    assert!(err.contains("search first, or get ID"), "{err}");
    assert!(!err.contains("/search") && !err.contains("/get"), "{err}");
    let bio = rose.ssh(&a, "alice", &["bio"]);
    assert_eq!(stdout(&bio), "you have no bio; bio TEXT sets one\n");
    // A search answers its results, without the shell's `/get N` hint.
    let search = rose.ssh(&a, "alice", &["search", "nothing-matches-this"]);
    assert_exit(&search, 0);
    let out = stdout(&search);
    assert!(!out.contains("/get"), "{out}");
}
