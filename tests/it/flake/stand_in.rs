//! The stand-in nixpkgs behaves like nixpkgs 26.11 where the flakes depend on it: it throws
//! where nixpkgs throws, `lib.meta.availableOn` and `lib.fileset` are nixpkgs' own, and the
//! mistakes real nixpkgs refuses fail with it too.

use super::*;

/// nixpkgs 26.11 dropped x86_64-darwin: the attribute is still listed, but evaluating it
/// throws "Nixpkgs 26.11 has dropped support for x86_64-darwin." (NixOS/nixpkgs#493096, as
/// quoted by the flakes that dropped the system after it). pkgs/top-level/aliases.nix:
/// `docker-distribution = throw "'docker-distribution' has been renamed to/replaced by
/// 'distribution'"; # Converted to throw 2025-10-27`.
fn stand_in_throws_where_nixpkgs_throws(nix: NixVersion) {
    let flakes = Flakes::new(nix, "1.97.1");
    assert_eq!(
        flakes.eval_stand_in_ok(
            "{ listed = nixpkgs.legacyPackages ? x86_64-darwin; \
               forced = (builtins.tryEval nixpkgs.legacyPackages.x86_64-darwin).success; \
               aliasListed = nixpkgs.legacyPackages.x86_64-linux ? docker-distribution; }"
        ),
        json!({ "listed": true, "forced": false, "aliasListed": true })
    );
    for (body, message) in [
        (
            "nixpkgs.legacyPackages.x86_64-darwin.hello",
            "Nixpkgs 26.11 has dropped support for x86_64-darwin.",
        ),
        (
            "nixpkgs.legacyPackages.x86_64-linux.docker-distribution.name",
            "'docker-distribution' has been renamed to/replaced by 'distribution'",
        ),
    ] {
        let stderr = flakes.eval_stand_in(body).expect_err(body);
        assert!(stderr.contains(message), "{body}:\n{stderr}");
    }
    // The renamed package itself is there.
    assert_eq!(
        flakes.eval_stand_in_ok("nixpkgs.legacyPackages.x86_64-linux.distribution.pname"),
        json!("distribution")
    );
}

/// lib/meta.nix: `availableOn platform pkg` is true when `meta.platforms` is absent or one of
/// its patterns matches, and no `meta.badPlatforms` pattern does; `platformMatch` compares a
/// string pattern with `platform.system` and matches an attribute-set pattern against
/// `platform.parsed` (or the whole platform when the pattern has `parsed`). containerd's
/// meta.platforms is lib.platforms.linux (pkgs/by-name/co/containerd), distribution's is
/// lib.platforms.unix (pkgs/by-name/di/distribution). mkDerivation's meta check
/// (pkgs/stdenv/generic/check-meta.nix) refuses to evaluate an unavailable package: "is not
/// available on the requested hostPlatform".
fn stand_in_available_on_is_nixpkgs(nix: NixVersion) {
    let flakes = Flakes::new(nix, "1.97.1");
    let cases = flakes.eval_stand_in_ok(
        r#"let
             inherit (nixpkgs.lib.meta) availableOn;
             linux = nixpkgs.legacyPackages.x86_64-linux;
             mac = nixpkgs.legacyPackages.aarch64-darwin;
             on = system: { inherit system; parsed.kernel.name = builtins.head (builtins.match "[^-]+-(.+)" system); };
           in [
             (availableOn linux.stdenv.hostPlatform linux.containerd)
             (availableOn mac.stdenv.hostPlatform mac.containerd)
             (availableOn mac.stdenv.hostPlatform mac.distribution)
             (availableOn (on "aarch64-darwin") { })
             (availableOn (on "aarch64-darwin") { meta.platforms = [ ]; })
             (availableOn (on "x86_64-linux") { meta.badPlatforms = [ "x86_64-linux" ]; })
             (availableOn (on "x86_64-linux") { meta.platforms = [ { kernel.name = "linux"; } ]; })
             (availableOn (on "aarch64-darwin") { meta.platforms = [ { kernel.name = "linux"; } ]; })
             (availableOn (on "x86_64-linux") { meta.platforms = [ { parsed.kernel.name = "linux"; } ]; })
             (builtins.elem "armv6l-linux" nixpkgs.lib.platforms.unix)
             (builtins.elem "aarch64-darwin" nixpkgs.lib.platforms.linux)
             mac.containerd.meta.available
             (builtins.tryEval mac.containerd.drvPath).success
             (builtins.tryEval linux.containerd.drvPath).success
           ]"#,
    );
    assert_eq!(
        cases,
        json!([
            true, false, true, true, false, false, true, false, true, true, false, false, false,
            true
        ])
    );
    let stderr = flakes
        .eval_stand_in("nixpkgs.legacyPackages.aarch64-darwin.containerd.outPath")
        .expect_err("containerd on darwin");
    assert!(
        stderr
            .contains("Package 'containerd-2.2.1' is not available on the requested hostPlatform")
            && stderr.contains("hostPlatform.system = \"aarch64-darwin\""),
        "{stderr}"
    );
}

/// lib/fileset: `toSource { root; fileset; }` adds only the files of `fileset` to the store
/// (a `lib.sources` value whose outPath is a store path named "source"); a file set made
/// from a path that does not exist, a string `root`, files outside `root` and a non-list
/// `unions` argument are errors, with lib/fileset's messages.
fn stand_in_fileset_filters(nix: NixVersion) {
    let flakes = Flakes::new(nix, "1.97.1");
    let tree = tempfile::tempdir().expect("tempdir");
    for file in [
        "a.txt",
        "keep/x.txt",
        "keep/sub/y.txt",
        "drop/z.txt",
        "b.txt",
    ] {
        let path = tree.path().join(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, file).expect("write");
    }
    let root = format!("(/. + \"{}\")", tree.path().display());
    let to_source = |fileset: &str| {
        format!(
            "let fs = nixpkgs.lib.fileset; root = {root}; in \
             (fs.toSource {{ inherit root; fileset = {fileset}; }})"
        )
    };
    let source = flakes.eval_stand_in_ok(&format!(
        "let s = {}; in {{ inherit (s) name; out = s.outPath; str = \"${{s}}\"; }}",
        to_source("fs.unions [ (root + \"/a.txt\") (root + \"/keep\") ]")
    ));
    assert_eq!(source["name"], "source");
    let out = source["out"].as_str().expect("outPath");
    assert!(
        out.starts_with("/nix/store/") && out.ends_with("-source"),
        "{out}"
    );
    assert_eq!(source["str"], out, "a source interpolates to its outPath");
    let expected: BTreeSet<String> = ["a.txt", "keep/x.txt", "keep/sub/y.txt"]
        .map(String::from)
        .into();
    let out = nix.host_path(out);
    assert_eq!(files_under(&out), expected);
    assert_eq!(
        std::fs::read_to_string(out.join("keep/sub/y.txt")).expect("y.txt"),
        "keep/sub/y.txt"
    );

    let errors = [
        (
            to_source("fs.unions [ (root + \"/a.txt\") (root + \"/missing\") ]"),
            "lib.fileset.unions: element 1 (",
            "/missing) is a path that does not exist.",
        ),
        (
            format!(
                "nixpkgs.lib.fileset.toSource {{ root = \"{}\"; fileset = {root}; }}",
                tree.path().display()
            ),
            "lib.fileset.toSource: `root` (\"",
            "is a string-like value, but it should be a path instead.",
        ),
        (
            format!(
                "nixpkgs.lib.fileset.toSource {{ root = {root} + \"/keep\"; fileset = {root} + \"/a.txt\"; }}"
            ),
            "lib.fileset.toSource: `fileset` could contain files in",
            "which is not under the `root`",
        ),
        (
            to_source("fs.unions (root + \"/a.txt\")"),
            "lib.fileset.unions: Expected argument to be a list, but got a path.",
            "",
        ),
    ];
    for (body, first, second) in errors {
        let stderr = flakes
            .eval_stand_in(&format!("({body}).outPath"))
            .expect_err(&body);
        assert!(
            stderr.contains(first) && stderr.contains(second),
            "{body}:\n{stderr}"
        );
    }
}

/// What nixpkgs 26.11 refuses, the stand-in refuses: the project flake with x86_64-darwin
/// back in its systems or with the old `docker-distribution`, and the example with its
/// images back under packages.<system>.docker, each fail `nix flake check --no-build` (and
/// `nix flake show` where Nix's show forces the value).
fn stand_in_refuses_the_old_mistakes(nix: NixVersion) {
    let with_darwin = Flakes::new(nix, "1.97.1");
    with_darwin.rewrite(
        &with_darwin.project,
        "\"aarch64-darwin\"\n      ];",
        "\"x86_64-darwin\"\n        \"aarch64-darwin\"\n      ];",
    );
    let stderr = stderr_of_failure(
        &mut with_darwin.nix(&all_systems(nix, &["flake", "check", "--no-build"]), ""),
    );
    assert!(
        stderr.contains("Nixpkgs 26.11 has dropped support for x86_64-darwin."),
        "{stderr}"
    );
    stderr_of_failure(&mut with_darwin.nix(&all_systems(nix, &["flake", "show", "--json"]), ""));

    let with_alias = Flakes::new(nix, "1.97.1");
    with_alias.rewrite(
        &with_alias.project,
        "pkgs.distribution",
        "pkgs.docker-distribution",
    );
    let stderr = stderr_of_failure(
        &mut with_alias.nix(&all_systems(nix, &["flake", "check", "--no-build"]), ""),
    );
    assert!(
        stderr.contains("'docker-distribution' has been renamed to/replaced by 'distribution'"),
        "{stderr}"
    );

    let with_set = Flakes::new(nix, "1.97.1");
    with_set.rewrite(
        &with_set.example,
        "albatros = albatros system;",
        "albatros = albatros system; docker = self.legacyPackages.${system}.docker;",
    );
    let stderr = stderr_of_failure(
        &mut with_set.nix_example(&all_systems(nix, &["flake", "check", "--no-build"]), ""),
    );
    assert!(
        stderr.contains(".docker' is not a derivation")
            && stderr.contains("flake attribute 'packages."),
        "{stderr}"
    );
    stderr_of_failure(
        &mut with_set.nix_example(&all_systems(nix, &["flake", "show", "--json"]), ""),
    );
}

nix_tests!(
    stand_in_throws_where_nixpkgs_throws,
    stand_in_available_on_is_nixpkgs,
    stand_in_fileset_filters,
    stand_in_refuses_the_old_mistakes,
);
