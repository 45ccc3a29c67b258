//! Helpers shared by the integration tests.

use rosewire_shell::{Shell, ShellConfig, Status};

use crate::vt::Vt;

pub const COLS: u16 = 40;
pub const ROWS: u16 = 8;

pub fn config(cols: u16, rows: u16) -> ShellConfig {
    ShellConfig {
        term: "xterm-256color".to_owned(),
        cols,
        rows,
        nick: "alice".to_owned(),
        status: Status {
            instance: "rose.example".to_owned(),
            online: 3,
            ..Status::default()
        },
    }
}

/// A shell of COLS x ROWS that has rendered once, and a terminal that shows its output.
pub fn session() -> (Shell, Vt) {
    let mut shell = Shell::new(config(COLS, ROWS));
    let mut vt = Vt::new(COLS.into(), ROWS.into());
    vt.feed(&shell.render());
    (shell, vt)
}

/// Renders and feeds the bytes to `vt`, then checks that the terminal shows exactly what the
/// shell thinks it shows, with the cursor where the shell put it. Returns the bytes.
pub fn sync(shell: &mut Shell, vt: &mut Vt) -> Vec<u8> {
    let bytes = shell.render();
    vt.feed(&bytes);
    assert_eq!(
        vt.text(),
        shell.screen_text(),
        "terminal and model differ after {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(
        vt.cursor,
        shell.cursor(),
        "cursor after {:?}",
        String::from_utf8_lossy(&bytes)
    );
    bytes
}

/// The last row of the screen, without trailing blanks.
pub fn bottom_row(shell: &Shell) -> String {
    shell
        .screen_text()
        .last()
        .map(|row| row.trim_end().to_owned())
        .unwrap_or_default()
}
