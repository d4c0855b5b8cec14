# An example project released with alba: a small Go program (./albatros), built as a static
# binary for four Linux platforms and as a container image per platform, all on one
# x86_64-linux machine.
#
#   nix build .#packages.aarch64-linux.albatros             # one static binary
#   nix build .#legacyPackages.armv6l-linux.docker.albatros  # one image (docker-archive, gzip)
#   nix run .#alba -- build                                  # what a release would publish
#   nix run .#alba -- release 0.9 --dry-run                  # the plan: every object, "exists"/"new"
#   nix run .#alba -- release 0.9                            # publish to the targets below
#
# See examples/README.md. (This flake needs nixpkgs from the network; alba's own tests run
# `nix flake show`, `nix flake check --no-build` and evaluate its `release` with nixpkgs
# replaced by a local stand-in, tests/nixpkgs-stand-in.)
{
  description = "albatros: a static Go program and its images, released with alba";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixpkgs-unstable";
    # alba's flake: the `alba` app and `lib.mkRelease`. Point it at wherever you get alba
    # from: its git URL, or `path:/abs/path/to/alba` for a local checkout.
    alba.url = "git+https://git.example.org/alba";
    alba.inputs.nixpkgs.follows = "nixpkgs";
  };

  outputs =
    {
      self,
      nixpkgs,
      alba,
    }:
    let
      version = "0.9";

      # Everything is built on x86_64-linux (one CI machine, no remote builders needed):
      # each platform's binary is cross-compiled. Go with CGO off links statically.
      buildSystem = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${buildSystem};
      crossPkgs = {
        x86_64-linux = pkgs;
        i686-linux = pkgs.pkgsCross.gnu32;
        aarch64-linux = pkgs.pkgsCross.aarch64-multiplatform;
        armv6l-linux = pkgs.pkgsCross.raspberryPi; # GOARM=6: Raspberry Pi 1 and Zero
      };
      systems = builtins.attrNames crossPkgs;
      forSystems = f: builtins.mapAttrs (system: _: f system) crossPkgs;

      albatros =
        system:
        crossPkgs.${system}.buildGoModule {
          pname = "albatros";
          inherit version;
          src = ./albatros;
          vendorHash = null; # no dependencies
          env.CGO_ENABLED = "0";
          ldflags = [
            "-s"
            "-w"
            "-X main.version=${version}"
          ];
          meta = {
            description = "albatros, a small Go program released with alba";
            mainProgram = "albatros";
          };
        };

      # Image settings shared by both image builders. `architecture` comes from alba's own
      # system -> platform table, so the image config and alba agree (alba adds the `v6`
      # variant to the index for armv6l-linux; nixpkgs' images carry none).
      image = system: bin: {
        name = "albatros";
        tag = version;
        architecture = alba.lib.platforms.${system}.architecture;
        contents = [ bin ];
        config.Entrypoint = [ "/bin/albatros" ];
      };
    in
    {
      # The static binaries: packages.<system>.albatros, a folder with bin/albatros (alba
      # publishes the files of its bin/).
      packages = forSystems (system: {
        albatros = albatros system;
      });

      # The images, under legacyPackages: `nix flake check` and `nix flake show` refuse an
      # attribute set such as `docker` under packages.<system>. alba's default container
      # attribute finds them here (packages.<system>.docker.<name>, then
      # legacyPackages.<system>.docker.<name>, like Nix resolving an installable).
      legacyPackages = forSystems (
        system:
        let
          bin = self.packages.${system}.albatros;
        in
        {
          docker = {
            # A gzipped docker-archive in the store (the default container attribute).
            albatros = pkgs.dockerTools.buildLayeredImage (image system bin);
            # A script that writes the same archive to stdout: nothing big lands in the
            # store, alba runs it and streams the layers. Use it with
            #   container.attr = "legacyPackages.{system}.docker.albatros-stream";
            albatros-stream = pkgs.dockerTools.streamLayeredImage (image system bin);
          };
        }
      );

      # `nix run .#alba -- release 0.9` with the alba this flake pins.
      apps.${buildSystem}.alba = alba.apps.${buildSystem}.alba;

      # What `alba release VERSION` publishes. No `attr`: alba's defaults find the binaries
      # at packages.{system}.albatros and the images at legacyPackages.{system}.docker.albatros.
      # mkRelease stops evaluation on a typo, an unknown system or a missing name.
      release = alba.lib.mkRelease {
        name = "albatros";
        inherit systems;
        static.targets = [
          "s3://download.example.org?endpoint=garage.example.org&region=garage&s3ForcePathStyle=true"
        ];
        container.targets = [
          # A Garage bucket with website access: a static, read-only registry.
          "s3://registry.example.org?endpoint=garage.example.org&region=garage&s3ForcePathStyle=true"
          # And any OCI registry.
          "docker://docker.io/example/albatros"
        ];
      };
    };
}
