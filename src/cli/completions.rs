//! `alba completions SHELL` and `alba man`: generated from the same clap command that parses
//! the arguments (with its examples), written to stdout.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use clap_complete::Shell;

/// Arguments of `alba completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the completion script for one shell to stdout.
pub fn completions(args: CompletionsArgs) -> Result<()> {
    let mut cmd = super::command();
    // Into memory first: clap_complete panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "alba", &mut script);
    write_stdout(&script).context("writing the completions to stdout")
}

/// Writes the man page (roff) to stdout: clap_mangen's page for `alba`, then a COMMANDS
/// section with every command's full help, so one page documents everything.
pub fn man() -> Result<()> {
    let mut cmd = super::command().disable_help_subcommand(true);
    cmd.build();
    let page = clap_mangen::Man::new(cmd.clone());
    let mut roff = Vec::new();
    page.render_title(&mut roff)?;
    page.render_name_section(&mut roff)?;
    page.render_synopsis_section(&mut roff)?;
    page.render_description_section(&mut roff)?;
    page.render_options_section(&mut roff)?;
    roff.extend(commands_section(&cmd).into_bytes());
    roff.extend(examples_section(&cmd).into_bytes());
    page.render_version_section(&mut roff)?;
    let text = String::from_utf8_lossy(&roff);
    write_stdout(ascii_only(&text).as_bytes()).context("writing the man page to stdout")
}

/// Writes to stdout; a reader that stopped early (`alba man | head`) is not an error.
fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// Writes every non-ASCII character as the roff escape `\[uXXXX]`: groff reads its input as
/// Latin-1 unless run through preconv (`man` does, `groff` without `-k` does not).
fn ascii_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    out
}

/// `.SH COMMANDS`: each command's `--help` text, in no-fill mode (examples stay copyable).
fn commands_section(cmd: &clap::Command) -> String {
    let mut text = String::from(".SH COMMANDS\n");
    for (path, sub) in leaves(cmd, "alba") {
        let mut sub = sub.bin_name(&path);
        let help = sub.render_long_help().to_string();
        text.push_str(&format!(".SS \"{}\"\n.nf\n", escape(&path)));
        for line in help.trim_end().lines() {
            text.push_str(&escape_line(line));
            text.push('\n');
        }
        text.push_str(".fi\n");
    }
    text
}

/// `.SH EXAMPLES`: the examples of `alba --help`.
fn examples_section(cmd: &clap::Command) -> String {
    let help = cmd
        .get_after_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    let mut text = String::from(".SH EXAMPLES\n.nf\n");
    for line in help.lines().skip_while(|l| l.ends_with(':')) {
        text.push_str(&escape_line(line));
        text.push('\n');
    }
    text.push_str(".fi\n");
    text
}

/// Every command below `cmd` (groups and leaves, depth first) with its full name.
fn leaves(cmd: &clap::Command, name: &str) -> Vec<(String, clap::Command)> {
    let mut found = Vec::new();
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let path = format!("{name} {}", sub.get_name());
        found.push((path.clone(), sub.clone()));
        found.extend(leaves(sub, &path));
    }
    found
}

/// Escapes text for roff: backslashes, and `-` as a real minus so examples copy as typed.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

/// [`escape`] plus a guard for lines that roff would read as requests (`.` or `'` first).
fn escape_line(line: &str) -> String {
    let escaped = escape(line);
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_escapes_backslashes_dashes_and_requests() {
        assert_eq!(escape_line(r"a\b --x"), r"a\eb \-\-x");
        assert_eq!(escape_line(".hidden"), r"\&.hidden");
        assert_eq!(escape_line("'q'"), r"\&'q'");
        assert_eq!(ascii_only("a…→"), r"a\[u2026]\[u2192]");
    }

    #[test]
    fn every_command_has_a_section() {
        let mut cmd = crate::cli::command();
        cmd.build();
        let text = commands_section(&cmd);
        for name in [
            "alba release",
            "alba static push",
            "alba container gc",
            "alba man",
        ] {
            assert!(
                text.contains(&format!(".SS \"{}\"", escape(name))),
                "{name}"
            );
        }
    }
}
