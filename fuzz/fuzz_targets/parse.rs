//! The command and search query grammars on arbitrary input: never panic, errors point
//! inside the line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rosewire_shell::query::parse_query;
use rosewire_shell::{parse_exec, parse_shell_line};

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    if let Err(error) = parse_shell_line(&line) {
        assert!(error.offset <= line.len());
        let _ = error.to_string();
    }
    if let Err(error) = parse_exec(&line) {
        assert!(error.offset <= line.len());
        let _ = error.to_string();
    }
    if let Err(error) = parse_query(&line) {
        assert!(error.offset <= line.len());
        let _ = error.to_string();
    }
});
