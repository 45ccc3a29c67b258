//! The interactive shell on arbitrary terminal bytes: never panics, the input line stays
//! bounded and free of control characters, and rendering always succeeds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rosewire_shell::command::MAX_LINE_BYTES;
use rosewire_shell::{Message, Shell, ShellConfig, Status};

fuzz_target!(|data: &[u8]| {
    let mut shell = Shell::new(ShellConfig {
        term: "xterm-256color".to_owned(),
        cols: 40,
        rows: 10,
        nick: "alice".to_owned(),
        status: Status {
            instance: "rose.example".to_owned(),
            online: 2,
            activity: "get song.flac 42%".to_owned(),
        },
    });
    shell.set_nicks(vec!["alice".to_owned(), "bob".to_owned()]);
    // Split the input at 0xFE bytes (invalid UTF-8, dropped by the shell anyway) into reads,
    // so that sequences cut between reads are exercised; every fourth read also arrives as
    // a chat message from a peer.
    for (i, chunk) in data.split(|byte| *byte == 0xfe).enumerate() {
        let _ = shell.handle_input(chunk);
        if i % 4 == 3 {
            shell.push(Message::chat(0, "bob", &String::from_utf8_lossy(chunk)));
        }
        let _ = shell.render();
    }
    assert!(shell.input().len() <= MAX_LINE_BYTES);
    assert!(!shell.input().chars().any(char::is_control));
    let _ = shell.farewell();
});
