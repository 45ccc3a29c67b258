//! `/who [--json]`: the users with a shell open on this instance.

use rosewire_shell::Address;
use serde_json::json;

use super::{json_line, Ctx, Output};

pub fn run(ctx: &Ctx<'_>, json: bool) -> Output {
    let domain = ctx.app.domain();
    let online = ctx.app.chat.online();
    let lines = if json {
        online
            .iter()
            .map(|o| {
                json_line(
                    json!({ "nick": o.nick, "address": Address::new(&o.nick, domain).to_string() }),
                )
            })
            .collect()
    } else if online.is_empty() {
        vec!["nobody has a shell open".to_owned()]
    } else {
        let width = online.iter().map(|o| o.nick.len()).max().unwrap_or(0);
        let mut lines: Vec<String> = online
            .iter()
            .map(|o| format!("{:width$}  {}", o.nick, Address::new(&o.nick, domain)))
            .collect();
        lines.push(format!("{} online", online.len()));
        lines
    };
    Output::lines(lines)
}
