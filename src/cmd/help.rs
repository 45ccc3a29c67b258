//! `/help [CMD]`: the command list, or one command's usage and description.

use rosewire_shell::command::{command_spec, COMMANDS};

use super::{CmdError, Output};

/// The introduction above the command list.
const INTRO: &str = include_str!("../../assets/help.txt");

pub fn run(topic: Option<&str>) -> Result<Output, CmdError> {
    let Some(topic) = topic else {
        let mut lines: Vec<String> = INTRO.lines().map(str::to_owned).collect();
        let width = COMMANDS.iter().map(|c| c.usage.len()).max().unwrap_or(0);
        lines.extend(
            COMMANDS
                .iter()
                .map(|c| format!("  {:width$}  {}", c.usage, c.summary)),
        );
        return Ok(Output::lines(lines));
    };
    let spec = command_spec(topic).ok_or_else(|| {
        CmdError::Usage(format!(
            "no help for {topic:?}: there is no such command; try /help"
        ))
    })?;
    let mut lines = vec![format!("usage: {}", spec.usage)];
    lines.extend(spec.help.lines().map(str::to_owned));
    Ok(Output::lines(lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_command_and_explains_one() {
        let all = run(None).unwrap().lines.join("\n");
        for c in COMMANDS {
            assert!(all.contains(c.usage), "help lacks {}", c.usage);
        }
        let who = run(Some("who")).unwrap().lines.join("\n");
        assert!(who.starts_with("usage: /who"), "{who}");
        assert!(matches!(run(Some("nope")), Err(CmdError::Usage(m)) if m.contains("\"nope\"")));
    }
}
