//! The local chat's persisted lines.

use rusqlite::{params, Connection};

use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatKind {
    /// A plain chat line (`/say` or text typed in the shell).
    Say,
    /// An action (`/me waves`).
    Me,
}

impl ChatKind {
    fn as_str(self) -> &'static str {
        match self {
            ChatKind::Say => "say",
            ChatKind::Me => "me",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLine {
    pub id: i64,
    pub at: i64,
    pub from_nick: String,
    pub from_domain: String,
    pub kind: ChatKind,
    pub text: String,
}

pub fn insert_line(
    conn: &Connection,
    at: i64,
    from_nick: &str,
    from_domain: &str,
    kind: ChatKind,
    text: &str,
) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO chat_lines (at, from_nick, from_domain, kind, text) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![at, from_nick, from_domain, kind.as_str(), text],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The newest `limit` lines, oldest first.
pub fn recent_lines(conn: &Connection, limit: usize) -> Result<Vec<StoredLine>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, at, from_nick, from_domain, kind, text FROM
           (SELECT * FROM chat_lines ORDER BY id DESC LIMIT ?1)
         ORDER BY id",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        let kind: String = r.get(4)?;
        Ok(StoredLine {
            id: r.get(0)?,
            at: r.get(1)?,
            from_nick: r.get(2)?,
            from_domain: r.get(3)?,
            kind: if kind == "me" {
                ChatKind::Me
            } else {
                ChatKind::Say
            },
            text: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_lines_are_the_newest_oldest_first() {
        let conn = crate::store::open_in_memory();
        for i in 0..5 {
            insert_line(
                &conn,
                i,
                "alice",
                "x.example",
                ChatKind::Say,
                &format!("line {i}"),
            )
            .unwrap();
        }
        let lines = recent_lines(&conn, 2).unwrap();
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["line 3", "line 4"]);
    }
}
