# A stand-in for nixpkgs, used by tests/flake.rs in place of the nixpkgs that flake.lock pins
# (the 26.11 pre-release of 2026-08): that one cannot be fetched here (no network), and its
# lib needs Nix >= 2.18 while the host's Nix is 2.8. It evaluates with Nix 2.8 and 2.26.
#
# It has only what alba's two flakes (flake.nix, examples/flake.nix) touch, but where they
# depend on nixpkgs' behaviour it behaves like nixpkgs, so a flake that real nixpkgs refuses
# fails here too:
#   - legacyPackages.x86_64-darwin throws (nixpkgs 26.11 dropped the system);
#   - removed or renamed attributes throw (pkgs/top-level/aliases.nix: docker-distribution);
#   - lib.meta.availableOn and platformMatch are nixpkgs' (lib/meta.nix), over the
#     lib.platforms lists of lib/systems/doubles.nix;
#   - a package unavailable on its hostPlatform keeps a readable `meta`, but its drvPath and
#     outPath throw, like mkDerivation's meta check (pkgs/stdenv/generic/check-meta.nix);
#   - lib.fileset.toSource really filters: its outPath is a store path holding only the
#     selected files, and it refuses what lib/fileset refuses (a missing path, a string
#     instead of a path, files outside the root);
#   - callPackage fails on a missing argument, package sets are per host platform
#     (pkgsStatic, pkgsCross.*), and mkDerivation-style results carry their arguments as
#     attributes, as real derivations do.
# Every package is a `derivation` whose builder only writes a placeholder: nothing here is
# meant to be built. `@RUSTC@` is replaced by the rustc version rustPlatform claims to ship.
{
  description = "nixpkgs stand-in for alba's flake tests (tests/flake.rs)";

  outputs =
    { self }:
    let
      inherit (builtins)
        all
        any
        attrNames
        concatLists
        elemAt
        filter
        genList
        head
        isAttrs
        isList
        isPath
        isString
        length
        listToAttrs
        pathExists
        stringLength
        substring
        toJSON
        typeOf
        ;

      hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;
      imap0 = f: list: genList (i: f i (elemAt list i)) (length list);
      isStringLike = v: isString v || isPath v || (isAttrs v && v ? outPath);

      lib = rec {
        versionAtLeast = v: min: builtins.compareVersions v min >= 0;

        # lib/attrsets.nix
        matchAttrs =
          pattern: attrs:
          all (
            name:
            attrs ? ${name}
            && (
              let
                lhs = pattern.${name};
                rhs = attrs.${name};
              in
              if isAttrs lhs then isAttrs rhs && matchAttrs lhs rhs else lhs == rhs
            )
          ) (attrNames pattern);

        # lib/systems/doubles.nix: lists of system strings (what meta.platforms holds).
        platforms = rec {
          linux = map (cpu: "${cpu}-linux") [
            "aarch64"
            "armv5tel"
            "armv6l"
            "armv7a"
            "armv7l"
            "i686"
            "loongarch64"
            "m68k"
            "microblaze"
            "microblazeel"
            "mips"
            "mips64"
            "mips64el"
            "mipsel"
            "powerpc"
            "powerpc64"
            "powerpc64le"
            "riscv32"
            "riscv64"
            "s390"
            "s390x"
            "x86_64"
          ];
          darwin = [
            "x86_64-darwin"
            "aarch64-darwin"
          ];
          freebsd = [
            "aarch64-freebsd"
            "i686-freebsd"
            "x86_64-freebsd"
          ];
          unix =
            linux
            ++ darwin
            ++ freebsd
            ++ [
              "i686-cygwin"
              "x86_64-cygwin"
              "i686-netbsd"
              "x86_64-netbsd"
              "i686-openbsd"
              "x86_64-openbsd"
              "x86_64-solaris"
            ];
          windows = [
            "i686-windows"
            "x86_64-windows"
          ];
          all = unix ++ windows;
        };

        licenses = {
          mit = {
            spdxId = "MIT";
            shortName = "mit";
            fullName = "MIT License";
            free = true;
          };
          asl20 = {
            spdxId = "Apache-2.0";
            shortName = "asl20";
            fullName = "Apache License 2.0";
            free = true;
          };
        };

        # lib/meta.nix, as in nixpkgs.
        meta = rec {
          platformMatch =
            platform: elem:
            if isString elem then
              platform ? system && elem == platform.system
            else
              matchAttrs (if elem ? parsed then elem else { parsed = elem; }) platform;

          availableOn =
            platform: pkg:
            ((!pkg ? meta.platforms) || any (platformMatch platform) pkg.meta.platforms)
            && all (elem: !platformMatch platform elem) (pkg.meta.badPlatforms or [ ]);
        };

        # lib/fileset, reduced to what a source filter needs: a file set is the list of the
        # selected paths (files or folders), each known to exist when the set was made.
        fileset =
          let
            isFileset = v: isAttrs v && (v._type or "") == "fileset";
            make = paths: {
              _type = "fileset";
              _paths = paths;
            };
            coerce =
              context: value:
              if isFileset value then
                value
              else if !isPath value then
                if isAttrs value && value ? _isLibCleanSourceWith then
                  throw "${context} is a `lib.sources`-based value, but it should be a file set or a path instead."
                else if isStringLike value then
                  throw "${context} (\"${toString value}\") is a string-like value, but it should be a file set or a path instead.\n    Paths represented as strings are not supported by `lib.fileset`, use `lib.sources` or derivations instead."
                else
                  throw "${context} is of type ${typeOf value}, but it should be a file set or a path instead."
              else if !pathExists value then
                throw "${context} (${toString value}) is a path that does not exist.\n    To create a file set from a path that may not exist, use `lib.fileset.maybeMissing`."
              else
                make [ (toString value) ];
            unionsIn =
              context: values: make (concatLists (map (e: (coerce "${context}: ${e.context}" e.value)._paths) values));
          in
          {
            maybeMissing =
              path:
              if !isPath path then
                coerce "lib.fileset.maybeMissing: Argument" path
              else if pathExists path then
                make [ (toString path) ]
              else
                make [ ];

            union =
              a: b:
              unionsIn "lib.fileset.union" [
                {
                  context = "first argument";
                  value = a;
                }
                {
                  context = "second argument";
                  value = b;
                }
              ];

            unions =
              filesets:
              if !isList filesets then
                throw "lib.fileset.unions: Expected argument to be a list, but got a ${typeOf filesets}."
              else
                unionsIn "lib.fileset.unions" (
                  imap0 (i: value: {
                    context = "element ${toString i}";
                    inherit value;
                  }) filesets
                );

            # The result is lib.sources' shape (cleanSourceWith): an attribute set whose
            # outPath is `builtins.path` of the root with a filter that keeps the selected
            # files, the folders they are in, and nothing else.
            toSource =
              { root, fileset }:
              let
                selection = coerce "lib.fileset.toSource: `fileset`" fileset;
                rootString = toString root;
                outside = filter (p: !(p == rootString || hasPrefix "${rootString}/" p)) selection._paths;
                selected = path: any (p: path == p || hasPrefix "${p}/" path) selection._paths;
                holdsSelected = path: any (p: hasPrefix "${path}/" p) selection._paths;
                sourceFilter = path: type: selected path || (type == "directory" && holdsSelected path);
              in
              if !isPath root then
                if isStringLike root then
                  throw "lib.fileset.toSource: `root` (\"${toString root}\") is a string-like value, but it should be a path instead.\n    Paths in strings are not supported by `lib.fileset`, use `lib.sources` or derivations instead."
                else
                  throw "lib.fileset.toSource: `root` is of type ${typeOf root}, but it should be a path instead."
              else if !pathExists root then
                throw "lib.fileset.toSource: `root` (${rootString}) does not exist."
              else if outside != [ ] then
                throw "lib.fileset.toSource: `fileset` could contain files in ${head outside}, which is not under the `root` (${rootString})."
              else
                {
                  _isLibCleanSourceWith = true;
                  origSrc = root;
                  filter = sourceFilter;
                  name = "source";
                  outPath = builtins.path {
                    name = "source";
                    path = root;
                    filter = sourceFilter;
                  };
                };
          };
      };

      # lib/systems/flake-systems.nix: the systems nixpkgs' flake exposes.
      flakeSystems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "armv6l-linux"
        "armv7l-linux"
        "i686-linux"
        "aarch64-darwin"
        "powerpc64le-linux"
        "riscv64-linux"
        "x86_64-freebsd"
      ];

      # What lib.systems.elaborate gives, as far as the flakes and availableOn look.
      platform =
        { system, isStatic }:
        let
          parts = builtins.match "([^-]+)-(.+)" system;
          cpu = elemAt parts 0;
          kernel = elemAt parts 1;
        in
        {
          inherit system isStatic;
          parsed = {
            cpu.name = cpu;
            kernel.name = kernel;
          };
          isLinux = kernel == "linux";
          isDarwin = kernel == "darwin";
          # lib/systems: same kernel and a compatible CPU (x86_64 runs i686 code).
          canExecute =
            other:
            other.parsed.kernel.name == kernel
            && (other.parsed.cpu.name == cpu || (cpu == "x86_64" && other.parsed.cpu.name == "i686"));
          # Go's GOARCH, dockerTools' default image architecture.
          go.GOARCH =
            {
              x86_64 = "amd64";
              i686 = "386";
              aarch64 = "arm64";
              armv6l = "arm";
              armv7l = "arm";
            }
            .${cpu} or cpu;
        };

      # A package set built on `buildSystem` for `hostSystem` (`pkgs`, `pkgsStatic`, `pkgsCross.*`).
      mkPkgs =
        {
          buildSystem,
          hostSystem,
          isStatic ? false,
        }:
        let
          hostPlatform = platform { system = hostSystem; inherit isStatic; };
          buildPlatform = platform {
            system = buildSystem;
            isStatic = false;
          };

          # stdenv.mkDerivation as far as evaluation goes: the arguments become attributes
          # (and the derivation's environment), `meta` stays readable, and a package whose
          # meta does not allow the host platform refuses to give a drvPath or outPath.
          mkDerivation =
            {
              name,
              meta ? { },
              passthru ? { },
              env ? { },
              ...
            }@args:
            let
              available = lib.meta.availableOn hostPlatform { inherit meta; };
              refuse = throw "Package '${name}' is not available on the requested hostPlatform:\n  hostPlatform.system = \"${hostSystem}\"\n  package.meta.platforms = ${toJSON (meta.platforms or [ ])}\n  package.meta.badPlatforms = ${toJSON (meta.badPlatforms or [ ])}";
              checked = value: if available then value else refuse;
              drv = derivation (
                builtins.removeAttrs args [
                  "meta"
                  "passthru"
                  "env"
                ]
                // env
                // {
                  system = buildSystem;
                  builder = "/bin/sh";
                  args = [
                    "-c"
                    "echo nixpkgs-stand-in > $out"
                  ];
                }
              );
            in
            drv
            // passthru
            // {
              meta = meta // {
                inherit available;
              };
              drvPath = checked drv.drvPath;
              outPath = checked drv.outPath;
            };

          package =
            pname: version: meta:
            mkDerivation {
              inherit pname version meta;
              name = "${pname}-${version}";
            };

          # lib.customisation.callPackageWith
          callPackage =
            fn: overrides:
            let
              f = if builtins.isFunction fn then fn else import fn;
              formals = builtins.functionArgs f;
              given = builtins.intersectAttrs formals pkgs // overrides;
              missing = filter (arg: !formals.${arg} && !(given ? ${arg})) (attrNames formals);
            in
            if missing != [ ] then
              throw "lib.customisation.callPackageWith: Function called without required argument \"${head missing}\""
            else
              f given;

          pkgs = {
            inherit lib callPackage;
            stdenv = {
              inherit hostPlatform buildPlatform mkDerivation;
            };

            rustPlatform = {
              rust.rustc = package "rustc" "@RUSTC@" { };
              buildRustPackage =
                {
                  pname,
                  version,
                  src,
                  ...
                }@args:
                if !(args ? cargoLock || args ? cargoHash) then
                  throw "cargoHash, cargoVendorDir, cargoDeps, or cargoLock must be set"
                else
                  mkDerivation (
                    builtins.removeAttrs args [ "cargoLock" ]
                    // {
                      name = "${pname}-${version}";
                    }
                    # importCargoLock reads the lock file at evaluation time.
                    // (if args ? cargoLock then { cargoDeps = builtins.hashFile "sha256" args.cargoLock.lockFile; } else { })
                  );
            };

            buildGoModule =
              {
                pname,
                version,
                src,
                ...
              }@args:
              if !(args ? vendorHash) then
                throw "buildGoModule: vendorHash is missing"
              else
                mkDerivation (
                  builtins.removeAttrs args [ "vendorHash" ]
                  // {
                    name = "${pname}-${version}";
                    vendorHash = toString args.vendorHash;
                  }
                );

            mkShell =
              {
                name ? "nix-shell",
                packages ? [ ],
                ...
              }@args:
              mkDerivation (
                builtins.removeAttrs args [ "packages" ]
                // {
                  inherit name;
                  nativeBuildInputs = packages ++ (args.nativeBuildInputs or [ ]);
                }
              );

            runCommand =
              name: env: buildCommand:
              mkDerivation (env // { inherit name buildCommand; });

            # The arguments alba relies on (architecture, contents) stay attributes of the result.
            dockerTools =
              let
                image =
                  kind: args:
                  let
                    name = "${if kind == "stream" then "stream-" else ""}${baseNameOf args.name}${
                      if kind == "stream" then "" else ".tar.gz"
                    }";
                  in
                  mkDerivation {
                    inherit name;
                    architecture = args.architecture or hostPlatform.go.GOARCH;
                    contents = args.contents or [ ];
                    config = toJSON (args.config or { });
                    passthru = {
                      imageName = args.name;
                      imageTag = args.tag or null;
                    };
                  };
              in
              {
                buildLayeredImage = image "layered";
                streamLayeredImage = image "stream";
              };

            pkgsStatic = mkPkgs {
              inherit buildSystem hostSystem;
              isStatic = true;
            };
            pkgsCross = builtins.mapAttrs (name: system: mkPkgs { inherit buildSystem; hostSystem = system; }) {
              gnu32 = "i686-linux";
              gnu64 = "x86_64-linux";
              aarch64-multiplatform = "aarch64-linux";
              raspberryPi = "armv6l-linux";
              armv7l-hf-multiplatform = "armv7l-linux";
            };

            cmake = package "cmake" "4.1.2" { platforms = lib.platforms.all; };
            installShellFiles = package "install-shell-files" "0" { platforms = lib.platforms.all; };
            cargo = package "cargo" "@RUSTC@" { platforms = lib.platforms.all; };
            rustc = pkgs.rustPlatform.rust.rustc;
            clippy = package "clippy" "@RUSTC@" { platforms = lib.platforms.unix; };
            rustfmt = package "rustfmt" "@RUSTC@" { platforms = lib.platforms.unix; };
            nix = package "nix" "2.31.2" { platforms = lib.platforms.unix; };
            garage_1 = package "garage" "1.3.1" { };
            garage_2 = package "garage" "2.3.0" { };
            garage = pkgs.garage_1;
            skopeo = package "skopeo" "1.20.0" { };
            # pkgs/by-name/co/containerd: meta.platforms = lib.platforms.linux.
            containerd = package "containerd" "2.2.1" { platforms = lib.platforms.linux; };
            # pkgs/by-name/di/distribution: meta.platforms = lib.platforms.unix.
            distribution = package "distribution" "3.0.0" { platforms = lib.platforms.unix; };
            nginx = package "nginx" "1.28.0" { platforms = lib.platforms.all; };
            rclone = package "rclone" "1.71.1" { };
            nixfmt = package "nixfmt" "1.1.0" { };
            cacert = package "nss-cacert" "3.117" { platforms = lib.platforms.all; };

            # pkgs/top-level/aliases.nix (config.allowAliases is true by default).
            docker-distribution = throw "'docker-distribution' has been renamed to/replaced by 'distribution'"; # Converted to throw 2025-10-27
          };
        in
        pkgs;
    in
    {
      inherit lib;
      legacyPackages = listToAttrs (
        map (system: {
          name = system;
          value =
            if system == "x86_64-darwin" then
              throw "Nixpkgs 26.11 has dropped support for x86_64-darwin."
            else
              mkPkgs {
                buildSystem = system;
                hostSystem = system;
              };
        }) flakeSystems
      );
    };
}
