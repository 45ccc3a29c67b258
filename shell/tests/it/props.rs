//! Properties: nothing panics on arbitrary input, and the terminal always matches the model.

use proptest::prelude::*;
use rosewire_shell::{parse_exec, parse_shell_line, Message, Shell};

use crate::util::{config, sync};
use crate::vt::Vt;

/// One thing that can happen to a session.
#[derive(Debug, Clone)]
enum Op {
    Input(Vec<u8>),
    Push(String),
    Resize(u16, u16),
    Render,
}

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range('a', 'z'),
            1 => Just(' '),
            1 => Just('日'),
            1 => Just('\u{301}'),
            1 => Just('\u{1b}'),
            1 => Just('\t'),
        ],
        0..120,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn keys() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            Just(b"a".to_vec()),
            Just("日".as_bytes().to_vec()),
            Just(b"\x1b[D".to_vec()),
            Just(b"\x1b[C".to_vec()),
            Just(b"\x1b[A".to_vec()),
            Just(b"\x7f".to_vec()),
            Just(b"\x17".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\t".to_vec()),
            Just(b"/h".to_vec()),
            Just(b"\x0c".to_vec()),
            Just(b"\x1b[200~pasted\ntext\x1b[201~".to_vec()),
        ],
        0..30,
    )
    .prop_map(|keys| keys.concat())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => keys().prop_map(Op::Input),
        3 => text().prop_map(Op::Push),
        1 => (1u16..60, 1u16..12).prop_map(|(c, r)| Op::Resize(c, r)),
        2 => Just(Op::Render),
    ]
}

proptest! {
    #[test]
    fn parsers_never_panic(input in any::<String>()) {
        let _ = parse_shell_line(&input);
        let _ = parse_exec(&input);
        if let Err(e) = rosewire_shell::query::parse_query(&input) {
            prop_assert!(e.offset <= input.len());
        }
    }

    #[test]
    fn the_query_parser_never_panics_on_query_like_input(
        input in "( *(-|\"|ext:|size:[<>]=?|user:@?)?[a-z0-9.@]{0,6}\"?)*"
    ) {
        if let Err(e) = rosewire_shell::query::parse_query(&input) {
            prop_assert!(e.offset <= input.len());
        }
    }

    #[test]
    fn parsers_never_panic_on_command_like_input(input in "/?[a-z]{0,8}( +(\"|'|--json|[0-9a-z\\\\]{1,5}))*") {
        let _ = parse_shell_line(&input);
        let _ = parse_exec(&input);
    }

    #[test]
    fn shell_never_panics_on_arbitrary_bytes(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let mut shell = Shell::new(config(30, 6));
        for chunk in &chunks {
            let _ = shell.handle_input(chunk);
            let _ = shell.render();
        }
        prop_assert!(shell.input().len() <= rosewire_shell::command::MAX_LINE_BYTES);
        prop_assert!(!shell.input().chars().any(char::is_control));
    }

    #[test]
    fn the_terminal_always_shows_the_model(ops in proptest::collection::vec(op(), 1..25)) {
        let mut shell = Shell::new(config(30, 6));
        shell.set_nicks(vec!["alice".into(), "alan".into()]);
        let mut vt = Vt::new(30, 6);
        sync(&mut shell, &mut vt);
        for op in ops {
            match op {
                Op::Input(bytes) => { shell.handle_input(&bytes); }
                Op::Push(text) => shell.push(Message::chat(0, "bob", &text)),
                Op::Resize(cols, rows) => {
                    shell.resize(cols, rows);
                    vt.resize(cols.into(), rows.into());
                }
                Op::Render => { sync(&mut shell, &mut vt); }
            }
        }
        sync(&mut shell, &mut vt);
    }
}
