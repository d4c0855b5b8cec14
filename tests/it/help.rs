//! First contact: every command's help ends with examples that work as written, a missing
//! argument points at one, bash completion completes, and the man page renders cleanly.

use crate::common;

use std::path::Path;
use std::process::Command;

/// `alba <path> --help`, as text.
fn help(path: &[String]) -> String {
    let output = common::alba().args(path).arg("--help").run_expect(0);
    String::from_utf8(output.stdout).expect("help is UTF-8")
}

/// The names under a help text's `Commands:` heading (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.split("\nCommands:\n")
        .nth(1)
        .map(|rest| {
            rest.lines()
                .take_while(|l| !l.trim().is_empty())
                .filter_map(|l| l.split_whitespace().next())
                .filter(|name| *name != "help")
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The shell lines of a help text's `Examples:` section (comments left out).
fn examples(help: &str) -> Vec<String> {
    let section = help.split("\nExamples:\n").nth(1).unwrap_or_default();
    section
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Every command path (`[]`, `["static"]`, `["static", "push"]`, …) with its examples.
fn all_examples() -> Vec<(Vec<String>, Vec<String>)> {
    let mut found = Vec::new();
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = queue.pop() {
        let text = help(&path);
        for sub in subcommands(&text) {
            let mut child = path.clone();
            child.push(sub);
            queue.push(child);
        }
        found.push((path, examples(&text)));
    }
    found.sort();
    found
}

#[test]
fn every_help_ends_with_two_or_more_examples() {
    let all = all_examples();
    assert!(all.len() >= 15, "fewer commands than expected: {all:?}");
    for (path, lines) in &all {
        assert!(
            lines.len() >= 2,
            "`alba {} --help` has {} example(s): {lines:?}",
            path.join(" "),
            lines.len()
        );
        let text = help(path);
        let tail = text.trim_end().lines().last().unwrap_or_default();
        assert!(
            lines.iter().any(|l| tail.trim() == l),
            "the help of `alba {}` does not end with an example",
            path.join(" ")
        );
    }
    let top = &all[0].1;
    let seed = "alba static push -t albatros:0.9 df/ 's3://download.example.org?endpoint=garage.example.org&region=garage&s3ForcePathStyle=true'";
    assert!(top.iter().any(|l| l == seed), "{top:?}");
}

#[test]
fn a_missing_argument_points_at_an_example() {
    let output = common::alba().args(["container", "push"]).run_expect(2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--tag <NAME:TAG>"), "{stderr}");
    assert!(
        stderr.contains("tip: for example: alba container push -t albatros:0.9 docker/ 's3://registry.example.org?"),
        "{stderr}"
    );
    assert!(stderr.contains("alba container push --help"), "{stderr}");
}

/// True when an example reaches a remote service (it is then only parsed, not run).
fn is_remote(line: &str) -> bool {
    ["s3://", "docker://", "ssh://"]
        .iter()
        .any(|scheme| line.contains(scheme))
}

/// A folder the local examples run in: the example flake (as `.`), df/ and docker/ folders,
/// and a HOME with the folders the completion and man examples write to.
fn example_workspace(dir: &Path) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    std::fs::copy(example.join("flake.nix"), dir.join("flake.nix")).expect("copy flake.nix");
    let images = dir.join("images");
    std::fs::create_dir_all(&images).expect("mkdir images");
    for entry in std::fs::read_dir(example.join("images")).expect("list example images") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, images.join(path.file_name().expect("name"))).expect("copy image");
    }
    let systems = ["x86_64-linux", "aarch64-linux"];
    common::fixtures::static_dir(&dir.join("df"), "hello", &systems);
    common::fixtures::docker_dir(&dir.join("docker"), "hello", &systems);
    for folder in [
        ".local/share/bash-completion/completions",
        ".zfunc",
        ".config/fish/completions",
        ".local/share/man/man1",
    ] {
        std::fs::create_dir_all(dir.join("home").join(folder)).expect("mkdir in HOME");
    }
}

/// Runs one example line with bash in `dir`, `alba` on PATH; remote ones get `--help`
/// appended, so clap parses every argument before it and nothing is sent anywhere.
fn run_example(dir: &Path, line: &str) -> std::process::Output {
    let alba = Path::new(env!("CARGO_BIN_EXE_alba"));
    let path = format!(
        "{}:{}",
        alba.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = if is_remote(line) {
        format!("{line} --help")
    } else {
        line.to_string()
    };
    Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir)
        .env("PATH", path)
        .env("HOME", dir.join("home"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env("MANPAGER", "cat")
        .env("NO_COLOR", "1")
        .envs(common::nix_env())
        .envs(common::isolation_env(dir))
        .output()
        .expect("run bash")
}

#[test]
fn every_help_example_works_as_written() {
    if !common::nix_available() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    example_workspace(work.path());
    // Releases and pushes first, so ls, rm and gc find what they name.
    let mut lines: Vec<String> = all_examples().into_iter().flat_map(|(_, l)| l).collect();
    let mut seen = std::collections::HashSet::new();
    lines.retain(|l| seen.insert(l.clone()));
    let rank = |l: &String| match l.split_whitespace().nth(1) {
        Some("release") => 0,
        _ if l.contains(" push ") => 1,
        _ if l.contains(" rm ") || l.contains(" gc ") => 3,
        _ => 2,
    };
    lines.sort_by_key(rank);
    let mut failures = Vec::new();
    for line in &lines {
        let output = run_example(work.path(), line);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            failures.push(format!("{line}\n  exit {}\n{stderr}", output.status));
        }
    }
    assert!(
        failures.is_empty(),
        "examples that fail:\n{}",
        failures.join("\n")
    );
    let man = work.path().join("home/.local/share/man/man1/alba.1.gz");
    assert!(man.metadata().is_ok_and(|m| m.len() > 1000), "alba.1.gz");
    let published = work.path().join("dist/df-dist-v1/hello/index.json");
    let names = std::fs::read_to_string(&published).expect("the release example published");
    assert!(names.contains("\"0.9\""), "{names}");
}

#[test]
fn bash_completes_alba_cont_to_container() {
    let Some(bash) = common::require_program("bash", "apt-get install bash") else {
        return;
    };
    let alba = env!("CARGO_BIN_EXE_alba");
    let script = format!(
        r#"source <('{alba}' completions bash)
COMP_WORDS=(alba cont); COMP_CWORD=1; COMP_LINE='alba cont'; COMP_POINT=${{#COMP_LINE}}
_alba alba cont alba
printf '%s\n' "${{COMPREPLY[@]}}"
COMP_WORDS=(alba static p); COMP_CWORD=2; COMP_LINE='alba static p'; COMP_POINT=${{#COMP_LINE}}
_alba alba p static
printf '%s\n' "${{COMPREPLY[@]}}""#
    );
    let output = Command::new(bash)
        .args(["-c", &script])
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let replies: Vec<&str> = stdout.lines().collect();
    assert_eq!(replies, ["container", "push"], "{stdout}");
}

#[test]
fn zsh_and_fish_completions_name_every_command() {
    for shell in ["zsh", "fish"] {
        let output = common::alba().args(["completions", shell]).run_expect(0);
        let text = String::from_utf8_lossy(&output.stdout);
        for word in ["release", "container", "static", "completions", "dry-run"] {
            assert!(text.contains(word), "{shell} completions lack {word}");
        }
    }
}

#[test]
fn the_man_page_renders_without_warnings() {
    let Some(groff) = common::require_program("groff", "apt-get install groff") else {
        return;
    };
    let page = common::alba().arg("man").run_expect(0).stdout;
    assert!(page.is_ascii(), "the man page is not plain ASCII roff");
    let mut child = Command::new(groff)
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run groff");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &page).expect("feed groff");
    let output = child.wait_with_output().expect("groff");
    let warnings = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && warnings.trim().is_empty(),
        "{warnings}"
    );
    let text = String::from_utf8_lossy(&page);
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH COMMANDS",
        ".SH EXAMPLES",
        ".SS \"alba static push\"",
    ] {
        assert!(text.contains(section), "the page lacks {section}");
    }
    assert!(
        text.contains(r"alba static push \-t albatros:0.9 df/"),
        "the seed example is not in the page"
    );
}
