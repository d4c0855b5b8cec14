//! Error kinds that decide alba's exit status.
//!
//! Everything is an `anyhow::Error`; a [`InputError`] anywhere in the chain means the user
//! gave alba something wrong (exit 2), anything else is a failure to publish (exit 1).

use std::fmt;

/// Bad usage, configuration or input: exit status 2. The message names the problem and the fix.
#[derive(Debug)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Builds an input error (exit 2) from a message.
pub fn input(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(InputError(message.into()))
}

/// The exit status for an error: 2 for input errors, 1 for everything else.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    if error.chain().any(|e| e.is::<InputError>()) {
        2
    } else {
        1
    }
}

/// The innermost error of a chain (e.g. `Connection refused (os error 111)`).
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// `text` on one line, at most 300 characters (servers may answer with whole HTML pages).
pub fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

/// Returns early with an input error (exit 2), formatted like `format!`.
#[macro_export]
macro_rules! bail_input {
    ($($arg:tt)*) => { return Err($crate::error::input(format!($($arg)*))) };
}
