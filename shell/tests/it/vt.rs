//! A minimal terminal emulator for the sequences the renderer emits (cursor position,
//! erase, scroll region, scroll up, SGR, charset selection), so tests can check that the
//! bytes sent to a client really produce the screen the shell thinks it shows.

use rosewire_shell::editor::grapheme_width;

/// One cell: the grapheme shown there, or `None` for the right half of a wide character.
type Cell = Option<String>;

/// A terminal screen fed with bytes.
pub struct Vt {
    cols: usize,
    rows: usize,
    cells: Vec<Vec<Cell>>,
    /// Cursor (column, row), zero-based.
    pub cursor: (usize, usize),
    /// Scroll region, inclusive rows.
    region: (usize, usize),
    /// Whether bracketed paste mode is on.
    pub bracketed_paste: bool,
    /// The cell last printed to, where a combining mark goes.
    last: Option<(usize, usize)>,
}

impl Vt {
    pub fn new(cols: usize, rows: usize) -> Self {
        Vt {
            cols,
            rows,
            cells: vec![vec![Some(" ".to_owned()); cols]; rows],
            cursor: (0, 0),
            region: (0, rows - 1),
            bracketed_paste: false,
            last: None,
        }
    }

    /// A resize as a terminal does it: the content is kept where it fits.
    pub fn resize(&mut self, cols: usize, rows: usize) {
        self.cells.resize(rows, vec![Some(" ".to_owned()); cols]);
        for row in &mut self.cells {
            row.resize(cols, Some(" ".to_owned()));
        }
        self.cols = cols;
        self.rows = rows;
        self.region = (0, rows - 1);
        self.cursor = (self.cursor.0.min(cols - 1), self.cursor.1.min(rows - 1));
    }

    pub fn text(&self) -> Vec<String> {
        self.cells
            .iter()
            .map(|row| row.iter().flatten().map(String::as_str).collect())
            .collect()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        let text = std::str::from_utf8(bytes).expect("the renderer emits UTF-8");
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\x1b' => match chars.next() {
                    Some('[') => {
                        let mut params = String::new();
                        let mut last = None;
                        for c in chars.by_ref() {
                            if ('\x40'..='\x7e').contains(&c) {
                                last = Some(c);
                                break;
                            }
                            params.push(c);
                        }
                        self.csi(&params, last.expect("complete CSI"));
                    }
                    Some('(') => {
                        chars.next();
                    }
                    other => panic!("unexpected escape {other:?}"),
                },
                '\r' => self.cursor.0 = 0,
                '\n' => self.line_feed(),
                c if c.is_control() => panic!("unexpected control {c:?}"),
                c => self.print(c),
            }
        }
    }

    fn numbers(params: &str) -> Vec<usize> {
        params.split(';').map(|n| n.parse().unwrap_or(0)).collect()
    }

    fn csi(&mut self, params: &str, last: char) {
        let n = Self::numbers(params);
        let first = n.first().copied().unwrap_or(0).max(1);
        match (params.starts_with('?'), last) {
            (true, 'h') if params == "?2004" => self.bracketed_paste = true,
            (true, 'l') if params == "?2004" => self.bracketed_paste = false,
            (true, _) => {}
            (false, 'H') => {
                let row = first;
                let col = n.get(1).copied().unwrap_or(1).max(1);
                self.cursor = ((col - 1).min(self.cols - 1), (row - 1).min(self.rows - 1));
            }
            (false, 'J') if params == "2" => {
                self.cells = vec![vec![Some(" ".to_owned()); self.cols]; self.rows];
            }
            (false, 'K') => {
                let (x, y) = self.cursor;
                for cell in &mut self.cells[y][x..] {
                    *cell = Some(" ".to_owned());
                }
            }
            (false, 'r') => {
                self.region = if params.is_empty() {
                    (0, self.rows - 1)
                } else {
                    (first - 1, n.get(1).copied().unwrap_or(self.rows).max(1) - 1)
                };
                self.cursor = (0, 0);
            }
            (false, 'S') => {
                for _ in 0..first {
                    self.scroll_up();
                }
            }
            (false, 'm') => {}
            (false, 'A') => self.cursor.1 = self.cursor.1.saturating_sub(first),
            (false, 'B') => self.cursor.1 = (self.cursor.1 + first).min(self.rows - 1),
            (false, 'C') => self.cursor.0 = (self.cursor.0 + first).min(self.cols - 1),
            (false, 'D') => self.cursor.0 = self.cursor.0.saturating_sub(first),
            other => panic!("unexpected CSI {params:?} {other:?}"),
        }
    }

    fn scroll_up(&mut self) {
        let (top, bottom) = self.region;
        self.cells[top..=bottom].rotate_left(1);
        self.cells[bottom] = vec![Some(" ".to_owned()); self.cols];
    }

    fn line_feed(&mut self) {
        if self.cursor.1 == self.region.1 {
            self.scroll_up();
        } else if self.cursor.1 + 1 < self.rows {
            self.cursor.1 += 1;
        }
    }

    fn print(&mut self, c: char) {
        let s = c.to_string();
        let width = grapheme_width(&s);
        let (x, y) = self.cursor;
        if width == 0 {
            // A combining mark joins the character printed last.
            if let Some((x, y)) = self.last {
                if let Some(Some(cell)) = self.cells.get_mut(y).and_then(|row| row.get_mut(x)) {
                    cell.push(c);
                }
            }
            return;
        }
        assert!(
            x + width <= self.cols,
            "text runs off the right edge at {x},{y}: {c:?}"
        );
        self.cells[y][x] = Some(s);
        self.last = Some((x, y));
        for cell in &mut self.cells[y][x + 1..x + width] {
            *cell = None;
        }
        self.cursor.0 = (x + width).min(self.cols - 1);
        if x + width == self.cols {
            // Pending wrap: the next character would wrap; the renderer always moves first.
            self.cursor.0 = self.cols - 1;
        }
    }
}
