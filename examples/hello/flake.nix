{
  description = "hello: alba's offline example (no inputs; builds with the host's /bin/sh)";

  # Every package is a bare `derivation` whose builder is /bin/sh, so this flake needs no
  # nixpkgs and no network, and builds for each of `systems` on one machine once Nix's
  # `extra-platforms` lists them (try.sh sets it). Real flakes build with nixpkgs and
  # cross-compile: see ../flake.nix for the Go example.
  outputs =
    { self }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "armv6l-linux"
      ];

      # The "binary": a two-line shell script that says which system it was built for.
      hello =
        system:
        derivation {
          inherit system;
          name = "hello";
          builder = "/bin/sh";
          args = [
            "-c"
            "printf '#!/bin/sh\\necho hello from ${system}\\n' > $out && /bin/chmod 555 $out"
          ];
        };

      # The image: an uncompressed docker-archive (manifest.json, config, layer.tar holding
      # bin/hello, the script above), as dockerTools.buildImage writes it. It is committed
      # because a /bin/sh builder has no tar; tests/it/try_sh.rs rebuilds these archives byte for
      # byte from the script and fails if they drift (ALBA_WRITE_EXAMPLE=1 rewrites them).
      image =
        system:
        derivation {
          inherit system;
          name = "hello-image.tar";
          builder = "/bin/sh";
          args = [
            "-c"
            "/bin/cp ${./images + "/${system}.tar"} $out"
          ];
        };

      forEachSystem =
        f:
        builtins.listToAttrs (
          map (system: {
            name = system;
            value = f system;
          }) systems
        );
    in
    {
      packages = forEachSystem (system: {
        hello = hello system;
        default = hello system;
      });

      # The images under legacyPackages: `nix flake check` and `nix flake show` refuse an
      # attribute set such as `docker` under packages.<system>. alba's default container
      # attribute finds them here (packages.{system}.docker.<name>, then legacyPackages).
      legacyPackages = forEachSystem (system: {
        docker.hello = image system;
      });

      # What `alba release VERSION` publishes: static binaries from packages.{system}.hello,
      # images from legacyPackages.{system}.docker.hello, both into the folder dist/
      # (relative to where alba runs), laid out like the buckets they stand in for.
      release = {
        name = "hello";
        inherit systems;
        static.targets = [ "file:dist" ];
        container.targets = [ "file:dist" ];
      };
    };
}
