# alba as a callPackage-style derivation:
#
#   pkgs.callPackage ./nix/package.nix { }
#   pkgs.pkgsStatic.callPackage ./nix/package.nix { }                       # static (musl)
#   pkgs.pkgsCross.aarch64-multiplatform.pkgsStatic.callPackage ./nix/package.nix { }
{
  lib,
  stdenv,
  rustPlatform,
  cmake,
  installShellFiles,
}:
let
  cargoToml = builtins.fromTOML (builtins.readFile ../Cargo.toml);
  minimumRust = cargoToml.package.rust-version;
  rustcVersion = rustPlatform.rust.rustc.version or minimumRust;
in
# Current aws-sdk-s3 / aws-config need this rustc; say so at evaluation time rather than
# deep inside a failed build (cargo would refuse too, with a less helpful message).
if !(lib.versionAtLeast rustcVersion minimumRust) then
  throw "alba needs rustc >= ${minimumRust} (rust-version in Cargo.toml); this nixpkgs ships rustc ${rustcVersion}: update the nixpkgs input (nix flake update nixpkgs)"
else
  rustPlatform.buildRustPackage {
    pname = cargoToml.package.name;
    version = cargoToml.package.version;

    # Only what the build reads: a README or test edit does not rebuild alba.
    # src/platform.rs reads nix/platforms.json with include_str!. (A [[test]] or [[bench]]
    # section naming a file in Cargo.toml would need that file here too; tests/ and
    # benches/ found by Cargo's auto-discovery may simply be absent.)
    src = lib.fileset.toSource {
      root = ../.;
      fileset = lib.fileset.unions [
        ../Cargo.toml
        ../Cargo.lock
        ../src
        ./platforms.json
      ];
    };

    cargoLock.lockFile = ../Cargo.lock;

    # aws-lc-sys (rustls' crypto provider) compiles AWS-LC with the C compiler (its `cc`
    # builder); on targets without pre-generated bindings it falls back to CMake.
    # zstd-sys builds the bundled zstd with `cc` too. Neither needs anything else.
    nativeBuildInputs = [
      cmake
      installShellFiles
    ];
    # cmake is only a tool for aws-lc-sys's build script, not this package's build system.
    dontUseCmakeConfigure = true;

    # Only the unit tests inside the binary: the integration tests in tests/ start Garage,
    # a registry, containerd, nginx and Nix itself, none of which exist in the build sandbox.
    cargoTestFlags = [ "--bins" ];

    # Completions and the man page come from alba itself (`alba completions SHELL`, `alba man`),
    # so they need a binary the build machine can run: a cross-built alba ships without them.
    postInstall =
      if stdenv.buildPlatform.canExecute stdenv.hostPlatform then
        ''
          installShellCompletion --cmd alba \
            --bash <($out/bin/alba completions bash) \
            --zsh <($out/bin/alba completions zsh) \
            --fish <($out/bin/alba completions fish)
          $out/bin/alba man > alba.1
          installManPage alba.1
        ''
      else
        "";

    meta = {
      description = cargoToml.package.description;
      license = with lib.licenses; [
        mit
        asl20
      ];
      mainProgram = "alba";
      platforms = lib.platforms.unix;
    };
  }
