//! Per-key cost of the interactive shell, for short and full input lines.
//!
//! `cargo bench -p rosewire-shell --bench typing` prints one row per case: keys are fed one
//! `handle_input` call each, as a client sending one key per SSH packet would, and the time
//! per key is the total divided by the keys. A key must cost the same whatever the line
//! holds (issue 6, finding 4); see benches/README.md.

use std::hint::black_box;
use std::time::Instant;

use rosewire_shell::command::MAX_LINE_BYTES;
use rosewire_shell::{Shell, ShellConfig, Status};

/// Keys typed per case (the attack typed 256 KiB onto a full line).
const KEYS: usize = 256 * 1024;
/// Keys per case when rendering after each (a render costs far more than a key).
const RENDERED_KEYS: usize = 16 * 1024;

fn shell() -> Shell {
    let mut shell = Shell::new(ShellConfig {
        term: "xterm-256color".to_owned(),
        cols: 80,
        rows: 24,
        nick: "alice".to_owned(),
        status: Status::default(),
    });
    shell.render();
    shell
}

/// A shell whose line holds `len` bytes of text, the cursor moved by `moves` (bytes sent
/// once after filling it).
fn filled(len: usize, moves: &[u8]) -> Shell {
    let mut shell = shell();
    let text: String = "lorem ipsum dolor sit amet "
        .chars()
        .cycle()
        .take(len)
        .collect();
    shell.handle_input(format!("\x1b[200~{text}\x1b[201~").as_bytes());
    shell.handle_input(moves);
    assert_eq!(shell.input().len(), len);
    shell
}

/// Feeds `keys` (one key each) `KEYS` (or `RENDERED_KEYS`) times in total, one `handle_input` call per key,
/// rendering after each when `render`; returns nanoseconds per key.
fn per_key(mut shell: Shell, keys: &[&[u8]], render: bool) -> f64 {
    let count = if render { RENDERED_KEYS } else { KEYS };
    let started = Instant::now();
    for i in 0..count {
        black_box(shell.handle_input(keys[i % keys.len()]));
        if render {
            black_box(shell.render());
        }
    }
    started.elapsed().as_nanos() as f64 / count as f64
}

/// A case: its name, the line's length, the keys that place the cursor, the keys repeated.
type Case<'a> = (&'a str, usize, &'a [u8], &'a [&'a [u8]]);

fn main() {
    let middle = "\x1b[D".repeat(MAX_LINE_BYTES / 2);
    let middle = middle.as_bytes();
    let full = MAX_LINE_BYTES - 1;
    let type_and_erase: &[&[u8]] = &[b"x", b"\x7f"];
    let cases: [Case; 7] = [
        ("type+erase, end of a 16-byte line", 16, b"", type_and_erase),
        ("type+erase, end of a full line", full, b"", type_and_erase),
        (
            "type+erase, middle of a full line",
            full,
            middle,
            type_and_erase,
        ),
        (
            "type+erase, start of a full line",
            full,
            b"\x01",
            type_and_erase,
        ),
        (
            "type past the limit (line full)",
            MAX_LINE_BYTES,
            b"",
            &[b"x"],
        ),
        (
            "left+right, middle of a full line",
            full,
            middle,
            &[b"\x1b[D", b"\x1b[C"],
        ),
        ("home+end, full line", full, b"", &[b"\x01", b"\x05"]),
    ];
    println!(
        "{KEYS} keys per case ({RENDERED_KEYS} when rendering), one handle_input call per \
         key, screen 80x24"
    );
    println!("| case | ns/key | ns/key, rendering after each |");
    println!("|---|---:|---:|");
    for (name, len, moves, keys) in cases {
        let plain = per_key(filled(len, moves), keys, false);
        let rendered = per_key(filled(len, moves), keys, true);
        println!("| {name} | {plain:.0} | {rendered:.0} |");
    }
}
