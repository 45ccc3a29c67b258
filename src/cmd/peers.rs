//! `/peers [--json]`: the instances this one knows, with their delivery state.

use serde_json::json;

use super::{json_line, rfc3339, Ctx, Output};

pub async fn run(ctx: &Ctx<'_>, json: bool) -> Output {
    let peers = ctx.app.fed.peers().await;
    let lines = if json {
        peers
            .iter()
            .map(|p| {
                json_line(json!({
                    "domain": p.domain,
                    "state": p.state.as_str(),
                    "last_seen": p.last_seen.map(rfc3339),
                }))
            })
            .collect()
    } else if peers.is_empty() {
        vec!["no peers yet: this instance knows no other".to_owned()]
    } else {
        let width = peers.iter().map(|p| p.domain.len()).max().unwrap_or(0);
        let mut lines: Vec<String> = peers
            .iter()
            .map(|p| {
                let seen = p.last_seen.map_or_else(
                    || "never seen".to_owned(),
                    |t| format!("last seen {}", rfc3339(t)),
                );
                format!("{:width$}  {:<11}  {seen}", p.domain, p.state.as_str())
            })
            .collect();
        lines.push(format!("{} peers", peers.len()));
        lines
    };
    Output::lines(lines)
}
