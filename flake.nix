{
  description = "alba: publish what a Nix flake builds — static binaries and multi-arch OCI images to S3 (Garage), folders and registries";

  # flake.lock pins nixpkgs-unstable at 54ba4bce (2026-08-16), which ships rustc 1.97.1:
  # Cargo.toml's rust-version (1.94.1, what aws-sdk-s3 needs) must stay at or below the
  # pinned rustc, and nix/package.nix refuses to evaluate otherwise.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixpkgs-unstable";

  outputs =
    { self, nixpkgs }:
    let
      albaLib = import ./nix/lib.nix;

      # No x86_64-darwin: nixpkgs 26.11 dropped it, and touching legacyPackages.x86_64-darwin
      # throws, which fails `nix flake check` and `nix flake show` for the whole flake.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "aarch64-darwin"
      ];

      forAllSystems =
        f:
        builtins.listToAttrs (
          map (system: {
            name = system;
            value = f system nixpkgs.legacyPackages.${system};
          }) systems
        );

      # alba's own release: static (musl) binaries for four Linux platforms, all cross-built
      # on one x86_64-linux machine, and a small image of each (the binary + CA certificates).
      releaseBuildSystem = "x86_64-linux";
      releaseSystems = [
        "x86_64-linux"
        "i686-linux"
        "aarch64-linux"
        "armv6l-linux"
      ];
      staticPkgs = pkgs: {
        x86_64-linux = pkgs.pkgsStatic;
        i686-linux = pkgs.pkgsCross.gnu32.pkgsStatic;
        aarch64-linux = pkgs.pkgsCross.aarch64-multiplatform.pkgsStatic;
        armv6l-linux = pkgs.pkgsCross.raspberryPi.pkgsStatic;
      };
    in
    {
      # Pure Nix, no nixpkgs: the system -> platform table and mkRelease (see nix/lib.nix).
      lib = albaLib;

      overlays.default = final: prev: { alba = final.callPackage ./nix/package.nix { }; };

      packages = forAllSystems (
        system: pkgs: rec {
          alba = pkgs.callPackage ./nix/package.nix { };
          default = alba;
        }
      );

      # nix run .#alba -- release 0.9
      apps = forAllSystems (
        system: pkgs: rec {
          alba = {
            type = "app";
            program = "${self.packages.${system}.alba}/bin/alba";
            meta.description = "publish what a Nix flake builds";
          };
          default = alba;
        }
      );

      devShells = forAllSystems (
        system: pkgs: {
          # Everything tests/run.sh uses: the Rust toolchain, Nix, and the real services the
          # integration tests start (Garage 2.x, a registry, skopeo, containerd, nginx, rclone).
          default = pkgs.mkShell {
            packages = builtins.filter (pkgs.lib.meta.availableOn pkgs.stdenv.hostPlatform) [
              pkgs.cargo
              pkgs.rustc
              pkgs.clippy
              pkgs.rustfmt
              pkgs.nix
              (pkgs.garage_2 or pkgs.garage)
              pkgs.skopeo
              pkgs.containerd
              pkgs.distribution # the registry; the old name docker-distribution now throws
              pkgs.nginx
              pkgs.rclone
            ];
          };
        }
      );

      checks = forAllSystems (
        system: pkgs: {
          alba = self.packages.${system}.alba;
          # nix/tests.nix is pure Nix: it is evaluated here, so a failure fails evaluation.
          lib =
            let
              result = import ./nix/tests.nix;
            in
            if result.failures == [ ] then
              pkgs.runCommand "alba-lib-tests" { } ''
                echo "${toString result.passed} tests of nix/lib.nix passed" > $out
              ''
            else
              throw "nix/tests.nix failed: ${builtins.toJSON result.failures}";
        }
      );

      formatter = forAllSystems (system: pkgs: pkgs.nixfmt);

      # What alba's own release publishes, per Nix system: dist.<system>.alba (static binary)
      # and dist.<system>.docker.alba (docker-archive of it). Built on x86_64-linux.
      dist =
        let
          pkgs = nixpkgs.legacyPackages.${releaseBuildSystem};
        in
        builtins.listToAttrs (
          map (
            system:
            let
              static = (staticPkgs pkgs).${system}.callPackage ./nix/package.nix { };
            in
            {
              name = system;
              value = {
                alba = static;
                docker.alba = pkgs.dockerTools.buildLayeredImage {
                  name = "alba";
                  tag = static.version;
                  # The same table alba reads (nix/platforms.json); alba adds the variant.
                  architecture = albaLib.platforms.${system}.architecture;
                  contents = [
                    static
                    pkgs.cacert
                  ];
                  config = {
                    Entrypoint = [ "/bin/alba" ];
                    Env = [ "SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt" ];
                  };
                };
              };
            }
          ) releaseSystems
        );

      # alba releases itself: `nix run . -- release 0.9`. The target is a placeholder: a
      # folder `dist/` in the working directory (binaries under df-dist-v1/, images as a
      # static registry under v2/, and dist/.alba/nginx.conf to serve both). CI passes the
      # real ones instead, e.g.
      #   nix run . -- release 0.9 --only static --target 's3://download.example.org?endpoint=garage.example.org&region=garage&s3ForcePathStyle=true'
      #   nix run . -- release 0.9 --only container --target 'docker://registry.example.org/alba'
      release = albaLib.mkRelease {
        name = "alba";
        systems = releaseSystems;
        static = {
          attr = "dist.{system}.alba";
          targets = [ "file:dist" ];
        };
        container = {
          attr = "dist.{system}.docker.alba";
          targets = [ "file:dist" ];
        };
      };
    };
}
