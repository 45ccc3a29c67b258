//! `/library [--json]`: the user's own files.

use serde_json::json;

use super::{json_line, my_files, CmdError, Ctx, Output};
use crate::library::human_size;

/// Hex digits of an id shown in listings; `/get` accepts any unique prefix of 8 or more.
pub const SHORT_ID: usize = 12;

pub async fn run(ctx: &Ctx<'_>, json: bool) -> Result<Output, CmdError> {
    let files = my_files(ctx).await?;
    let lines = if json {
        files
            .iter()
            .map(|f| {
                json_line(json!({
                    "id": f.hash, "name": f.name, "path": f.path, "size": f.size, "shared": f.shared,
                }))
            })
            .collect()
    } else if files.is_empty() {
        vec![
            "your library is empty; upload with: sftp -P PORT you@host, then put FILE library/"
                .to_owned(),
        ]
    } else {
        let mut lines: Vec<String> = files
            .iter()
            .map(|f| {
                format!(
                    "{}  {:>10}  {}  {}",
                    &f.hash[..SHORT_ID.min(f.hash.len())],
                    human_size(f.size),
                    if f.shared { "shared " } else { "private" },
                    f.path
                )
            })
            .collect();
        let shared = files.iter().filter(|f| f.shared).count();
        let total: u64 = files.iter().map(|f| f.size).sum();
        lines.push(format!(
            "{} files, {}, {shared} shared",
            files.len(),
            human_size(total)
        ));
        lines
    };
    Ok(Output::lines(lines))
}
