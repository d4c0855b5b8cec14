//! Examples at the end of every command's help, and the tip a usage error gets from them.
//!
//! One table serves `--help`, usage errors and `alba man`, so they never disagree.
//! tests/it/help.rs runs every example line as written (those that reach the network only as
//! far as parsing), so an example that stops working fails the tests.

use std::ffi::OsString;

use clap::builder::StyledStr;
use clap::error::{ContextKind, ContextValue, ErrorKind};

/// The seed's bucket for static binaries, as the Go tool's users wrote it.
macro_rules! download {
    () => {
        "'s3://download.example.org?endpoint=garage.example.org&region=garage&s3ForcePathStyle=true'"
    };
}

/// The seed's bucket laid out as a static registry.
macro_rules! registry {
    () => {
        "'s3://registry.example.org?endpoint=garage.example.org&region=garage&s3ForcePathStyle=true'"
    };
}

/// Examples per command path (`""` is `alba` itself): shell lines, `#` lines explain the next.
const EXAMPLES: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "# Build every platform of the flake in . and publish to its release's targets",
            "alba release 0.9",
            "# The Go tool's commands keep working: a staging folder to a bucket",
            concat!("alba static push -t albatros:0.9 df/ ", download!()),
            "# What a target holds",
            "alba container ls -t hello file:dist",
        ],
    ),
    (
        "release",
        &[
            "# Publish version 0.9 to the targets the flake's release description names",
            "alba release 0.9",
            "# Every object a release would write to a folder, marked exists or new; write nothing",
            "alba release 0.9 --dry-run --target file:dist",
            "# Only the images, to Docker Hub, building aarch64 on a remote builder",
            "alba release 0.9 --only container --target docker://docker.io/dxflrs/albatros --nix-option builders 'ssh://builder aarch64-linux'",
        ],
    ),
    (
        "build",
        &[
            "# Build every platform; print kind, platform and store path",
            "alba build",
            "# Only the images, as JSON",
            "alba build --only container --json",
        ],
    ),
    (
        "static",
        &[
            concat!("alba static push -t albatros:0.9 df/ ", download!()),
            "alba static ls -t hello file:dist",
        ],
    ),
    (
        "static push",
        &[
            "# The Go tool's command: the folder df/<os>/<arch>/<file> to a bucket",
            concat!("alba static push -t albatros:0.9 df/ ", download!()),
            "# The same into a folder laid out like the bucket",
            "alba static push -t hello:0.2 df/ file:dist",
            "# Without DIR the flake builds the binaries; without TARGET they go to its static.targets",
            "alba static push -t hello:0.3 --dry-run",
        ],
    ),
    (
        "static ls",
        &[
            "alba static ls -t hello file:dist",
            concat!("alba static ls -t albatros --json ", download!()),
        ],
    ),
    (
        "static rm",
        &[
            "# What removing a tag would delete, in order; delete nothing",
            "alba static rm -t hello:0.2 file:dist --dry-run",
            concat!("alba static rm -t albatros:0.9-rc1 ", download!()),
        ],
    ),
    (
        "static gc",
        &[
            "# Keep the newest tag; list what would go",
            "alba static gc -t hello --keep 1 file:dist --dry-run",
            "# Keep the 10 newest and every release (X.Y.Z)",
            concat!(
                "alba static gc -t albatros --keep 10 --keep-releases ",
                download!()
            ),
        ],
    ),
    (
        "container",
        &[
            concat!("alba container push -t albatros:0.9 docker/ ", registry!()),
            "alba container ls -t hello file:dist",
        ],
    ),
    (
        "container push",
        &[
            "# The Go tool's commands: docker/<os>.<arch>[.<variant>].tar[.gz] to a bucket as a static registry, and to Docker Hub",
            concat!("alba container push -t albatros:0.9 docker/ ", registry!()),
            "alba container push -t albatros:0.9 docker/ 'docker://docker.io/dxflrs/albatros:0.9'",
            "# The same archives into a folder (serve it with its .alba/nginx.conf)",
            "alba container push -t hello:0.2 docker/ file:dist",
        ],
    ),
    (
        "container ls",
        &[
            "alba container ls -t hello file:dist",
            "alba container ls -t albatros docker://localhost:5000/albatros",
        ],
    ),
    (
        "container rm",
        &[
            "# What removing a tag would delete; delete nothing",
            "alba container rm -t hello:0.2 file:dist --dry-run",
            "alba container rm -t albatros:0.9-rc1 docker://registry.example.org/albatros",
        ],
    ),
    (
        "container gc",
        &[
            "# Keep the greatest version; list what would go",
            "alba container gc -t hello --keep 1 file:dist --dry-run",
            concat!(
                "alba container gc -t albatros --keep 10 --keep-releases ",
                registry!()
            ),
        ],
    ),
    (
        "verify",
        &[
            "# Read back every tag of hello in a folder: documents, files, SHA256SUMS, SBOMs, images",
            "alba verify -t hello file:dist",
            "# One tag through the bucket's public website endpoint, HEAD and size only, signature checked",
            concat!(
                "alba verify -t albatros:0.9 --quick --web https://download.example.org --sign-pub albatros.pub ",
                download!()
            ),
            "# Images in a registry, every blob downloaded and hashed",
            "alba verify -t albatros docker://docker.io/dxflrs/albatros",
            "# Cosign signatures and SLSA provenance, with the release's ECDSA public key",
            "alba verify -t albatros:0.9 --sign-pub cosign.pub docker://docker.io/dxflrs/albatros",
        ],
    ),
    (
        "completions",
        &[
            "# bash: load into this shell, or install for your user",
            "source <(alba completions bash)",
            "alba completions bash > ~/.local/share/bash-completion/completions/alba",
            "# zsh (with fpath+=(~/.zfunc) in ~/.zshrc) and fish",
            "alba completions zsh > ~/.zfunc/_alba",
            "alba completions fish > ~/.config/fish/completions/alba.fish",
        ],
    ),
    (
        "man",
        &[
            "alba man | man -l -",
            "alba man | gzip > ~/.local/share/man/man1/alba.1.gz",
        ],
    ),
];

/// The example lines of a command path such as `"static push"`.
fn lines_of(path: &str) -> Option<&'static [&'static str]> {
    EXAMPLES.iter().find(|(p, _)| *p == path).map(|(_, l)| *l)
}

/// The `Examples:` text for one command.
fn after_help(lines: &[&str]) -> String {
    let mut text = String::from("Examples:\n");
    for line in lines {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Gives `cmd` and each of its subcommands (recursively) its examples as `after_help`.
pub fn add_to(cmd: clap::Command) -> clap::Command {
    add_at(cmd, "")
}

fn add_at(mut cmd: clap::Command, path: &str) -> clap::Command {
    if let Some(lines) = lines_of(path) {
        cmd = cmd.after_help(after_help(lines));
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        let sub_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        cmd = cmd.mut_subcommand(&name, |sub| add_at(sub, &sub_path));
    }
    cmd
}

/// The command path (`"static push"`) that `args` name, as deep as it goes.
fn command_path(cmd: &clap::Command, args: &[OsString]) -> String {
    let mut current = cmd;
    let mut path: Vec<&str> = Vec::new();
    for arg in args.iter().skip(1) {
        let Some(arg) = arg.to_str() else { continue };
        if let Some(sub) = current.find_subcommand(arg) {
            path.push(sub.get_name());
            current = sub;
        }
    }
    path.join(" ")
}

/// Adds "tip: for example: …" (the command's first example) to a usage error.
pub fn add_tip(error: &mut clap::Error, cmd: &clap::Command, args: &[OsString]) {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return;
    }
    let path = command_path(cmd, args);
    let Some(example) = lines_of(&path)
        .into_iter()
        .flatten()
        .find(|l| !l.starts_with('#'))
    else {
        return;
    };
    let more = if path.is_empty() {
        "alba --help".to_string()
    } else {
        format!("alba {path} --help")
    };
    let tip = StyledStr::from(format!(
        "for example: {example}\n       more examples: {more}"
    ));
    error.insert(ContextKind::Suggested, ContextValue::StyledStrs(vec![tip]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_command_has_examples() {
        let cmd = add_to(crate::cli::Cli::command());
        let mut missing = Vec::new();
        walk(&cmd, "", &mut missing);
        assert!(missing.is_empty(), "commands without examples: {missing:?}");
    }

    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        if cmd.get_after_help().is_none() {
            missing.push(path.to_string());
        }
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let sub_path = format!("{path} {}", sub.get_name()).trim().to_string();
            walk(sub, &sub_path, missing);
        }
    }

    #[test]
    fn every_table_entry_names_a_command() {
        let cmd = add_to(crate::cli::Cli::command());
        for (path, _) in EXAMPLES {
            let args: Vec<OsString> = std::iter::once("alba")
                .chain(path.split_whitespace())
                .map(OsString::from)
                .collect();
            assert_eq!(command_path(&cmd, &args), *path);
        }
    }

    #[test]
    fn a_missing_argument_points_at_the_example() {
        let cmd = add_to(crate::cli::Cli::command());
        let args: Vec<OsString> = ["alba", "static", "push"].map(OsString::from).into();
        let mut error = cmd
            .clone()
            .try_get_matches_from(&args)
            .expect_err("-t is required");
        add_tip(&mut error, &cmd, &args);
        let text = error.render().to_string();
        assert!(
            text.contains("tip: for example: alba static push -t albatros:0.9 df/ 's3://"),
            "{text}"
        );
        assert!(text.contains("alba static push --help"), "{text}");
    }
}
