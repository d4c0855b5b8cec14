//! What alba tells the person or CI log watching it.
//!
//! Human lines go to stderr (stdout is kept for `--json` reports and listings). On a
//! terminal, long transfers show indicatif bars; in CI logs, plain lines.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How chatty alba is, and where progress goes.
#[derive(Debug, Clone)]
pub struct Ui {
    /// -1 quiet, 0 normal, 1+ verbose.
    pub level: i8,
    /// Stderr is a terminal: draw bars.
    pub terminal: bool,
}

impl Ui {
    /// A UI for the given verbosity (`-v` count minus `-q` count).
    pub fn new(level: i8) -> Ui {
        Ui {
            level,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// A UI that prints nothing (unit tests).
    #[cfg(test)]
    pub fn silent() -> Ui {
        Ui {
            level: -1,
            terminal: false,
        }
    }

    /// A normal progress line.
    pub fn line(&self, text: impl AsRef<str>) {
        if self.level >= 0 {
            eprintln!("{}", text.as_ref());
        }
    }

    /// A section heading, in the Go tool's spirit (`-- push to the s3 target --`).
    pub fn section(&self, text: impl AsRef<str>) {
        self.line(format!("-- {} --", text.as_ref()));
    }

    /// A detail shown with `-v`.
    pub fn detail(&self, text: impl AsRef<str>) {
        if self.level >= 1 {
            eprintln!("   {}", text.as_ref());
        }
    }

    /// A warning, shown unless `-q`.
    pub fn warn(&self, text: impl AsRef<str>) {
        if self.level >= 0 {
            eprintln!("warning: {}", text.as_ref());
        }
    }

    /// A spinner with elapsed time for work whose size is unknown, on a terminal only.
    pub fn spinner(&self, label: &str) -> ProgressBar {
        if !self.terminal || self.level < 0 {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// A byte-counting bar on a terminal, hidden elsewhere.
    pub fn bytes_bar(&self, total: u64, label: &str) -> ProgressBar {
        if !self.terminal || self.level < 0 {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(total);
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}

/// Bytes as a short human size (`64.00 MiB`), as indicatif shows them in its bars.
pub fn human_size(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}
