# Tests of nix/lib.nix in pure Nix (no nixpkgs):
#
#   nix-instantiate --eval --strict --json nix/tests.nix
#
# evaluates to { passed = N; failures = [ ... ]; } — `failures` must be empty. The flake's
# `checks.<system>.lib` fails to evaluate unless it is, and tests/it/nix_lib.rs runs this file
# besides checking the exact messages of each error.
let
  lib = import ./lib.nix;

  # builtins.tryEval catches `throw` but not its message: messages are checked through
  # lib.checkRelease (the list mkRelease turns into its error) and by tests/it/nix_lib.rs.
  throws = value: !(builtins.tryEval (builtins.deepSeq value value)).success;

  mentions =
    needle: problems:
    builtins.any (p: builtins.match ".*${needle}.*" p != null) problems;

  base = {
    name = "albatros";
    systems = [
      "x86_64-linux"
      "armv6l-linux"
    ];
  };

  tests = {
    platformsIsTheJsonFile = {
      expr = lib.platforms;
      expected = builtins.fromJSON (builtins.readFile ./platforms.json);
    };
    tenSystems = {
      expr = builtins.length lib.systems;
      expected = 10;
    };
    platformStrings = {
      expr = map lib.platformString [
        "x86_64-linux"
        "i686-linux"
        "aarch64-linux"
        "armv6l-linux"
        "armv7l-linux"
        "aarch64-darwin"
      ];
      expected = [
        "linux/amd64"
        "linux/386"
        "linux/arm64"
        "linux/arm/v6"
        "linux/arm/v7"
        "darwin/arm64"
      ];
    };
    # No `attr` is filled in: alba's own lookup (packages, then legacyPackages) applies.
    defaultsStatic = {
      expr = lib.mkRelease (base // { static = { }; });
      expected = base // {
        static = {
          attrs = { };
          targets = [ ];
        };
      };
    };
    defaultsContainer = {
      expr = (lib.mkRelease (base // { container.targets = [ "docker://registry.example.org/albatros" ]; })).container;
      expected = {
        attrs = { };
        targets = [ "docker://registry.example.org/albatros" ];
      };
    };
    explicitContainerAttrKept = {
      expr =
        (lib.mkRelease (base // { container.attr = "legacyPackages.{system}.docker.albatros"; })).container.attr;
      expected = "legacyPackages.{system}.docker.albatros";
    };
    absentSectionStaysAbsent = {
      expr = builtins.attrNames (lib.mkRelease (base // { container = { }; }));
      expected = [
        "container"
        "name"
        "systems"
      ];
    };
    overridesKept = {
      expr =
        (lib.mkRelease (
          base
          // {
            static = {
              attr = "dist.{system}.albatros";
              attrs.armv6l-linux = "legacy.arm";
            };
          }
        )).static;
      expected = {
        attr = "dist.{system}.albatros";
        attrs.armv6l-linux = "legacy.arm";
        targets = [ ];
      };
    };
    validIsClean = {
      expr = lib.checkRelease (base // { static = { }; });
      expected = [ ];
    };
    unknownTopKey = {
      expr = mentions "unknown key \"statc\"" (lib.checkRelease (base // { statc = { }; }));
      expected = true;
    };
    unknownSectionKey = {
      expr = mentions "unknown key \"tagets\" in `static`" (lib.checkRelease (base // { static.tagets = [ ]; }));
      expected = true;
    };
    unknownContainerKey = {
      expr = mentions "unknown key \"atr\" in `container`" (lib.checkRelease (base // { container.atr = "x"; }));
      expected = true;
    };
    unknownSystem = {
      expr = mentions "unknown system \"mips-linux\"" (
        lib.checkRelease (base // { systems = [ "mips-linux" ]; static = { }; })
      );
      expected = true;
    };
    missingName = {
      expr = mentions "missing `name`" (lib.checkRelease { systems = [ "x86_64-linux" ]; static = { }; });
      expected = true;
    };
    missingSystems = {
      expr = mentions "missing `systems`" (lib.checkRelease { name = "a"; static = { }; });
      expected = true;
    };
    badName = {
      expr = mentions "name \"a/b\" is not valid" (lib.checkRelease (base // { name = "a/b"; static = { }; }));
      expected = true;
    };
    attrsOutsideSystems = {
      expr = mentions "names \"i686-linux\", which is not in `systems`" (
        lib.checkRelease (base // { static.attrs.i686-linux = "x"; })
      );
      expected = true;
    };
    nothingToPublish = {
      expr = mentions "nothing to publish" (lib.checkRelease base);
      expected = true;
    };
    mkReleaseThrows = {
      expr = map throws [
        (lib.mkRelease (base // { statc = { }; }))
        (lib.mkRelease (base // { systems = [ "mips-linux" ]; static = { }; }))
        (lib.mkRelease { systems = [ "x86_64-linux" ]; static = { }; })
        (lib.mkRelease (base // { static = { }; }))
      ];
      expected = [
        true
        true
        true
        false
      ];
    };
    # Forcing any part of an invalid release fails: a typo cannot hide behind laziness.
    invalidFailsEvenForOneAttribute = {
      expr = throws (lib.mkRelease (base // { static = { }; typo = 1; })).name;
      expected = true;
    };
  };

  results = builtins.mapAttrs (
    name: t:
    let
      got = builtins.tryEval (builtins.deepSeq t.expr t.expr);
    in
    if got.success && got.value == t.expected then
      null
    else
      {
        test = name;
        expected = t.expected;
        got = if got.success then got.value else "<evaluation failed>";
      }
  ) tests;
in
{
  failures = builtins.filter (r: r != null) (builtins.attrValues results);
  passed = builtins.length (builtins.filter (r: r == null) (builtins.attrValues results));
}
