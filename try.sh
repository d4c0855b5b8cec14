#!/usr/bin/env bash
# Try alba on the committed example, offline: ./try.sh
#
# On a fresh Debian machine (as root, or a user with sudo) it
#   1. installs Nix from Debian's package nix-bin if `nix` is missing (nothing else);
#   2. gives Nix the settings alba needs here through NIX_CONFIG (no /etc/nix change);
#   3. builds alba (cargo build --release; needs Rust >= Cargo.toml's rust-version, e.g. from
#      rustup), or uses ALBA=/path/to/alba if set;
#   4. releases examples/hello (static binaries and images for three Linux systems, built by
#      /bin/sh derivations) to the folder try-out/dist, laid out like the buckets it stands in
#      for, with an nginx fragment that serves it;
#   5. prints where to look and how to inspect the result.
# The example itself is never written to; results go to try-out/ (gitignored) or to
# ALBA_TRY_OUT=/some/folder. Running it again publishes nothing new (same store paths, same
# digests). No network is used beyond Debian's package archive.
set -euo pipefail

REPO=$(cd "$(dirname "$0")" && pwd)
OUT=${ALBA_TRY_OUT:-$REPO/try-out}
VERSION=0.1

say() { echo "try.sh: $*" >&2; }

# Runs a command as root (directly, or through sudo).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs Debian's nix-bin when there is no nix at all.
install_nix() {
  command -v nix >/dev/null && return
  command -v apt-get >/dev/null || { say "no nix and no apt-get: install Nix yourself (https://nixos.org/download)"; exit 1; }
  say "installing Nix (Debian package nix-bin)"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nix-bin)
  if ! as_root "${apt[@]}" >/tmp/alba-try-apt.log 2>&1; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>/tmp/alba-try-apt.log 2>&1
    as_root "${apt[@]}" >>/tmp/alba-try-apt.log 2>&1 || { cat /tmp/alba-try-apt.log >&2; exit 1; }
  fi
}

# Nix runs single-user here (Debian's nix-bin): root, or a user who owns /nix. With a Nix
# daemon instead, the daemon applies the settings below only for its trusted users.
check_nix_store() {
  [ "$(id -u)" = 0 ] || [ -w /nix/store ] || [ -S /nix/var/nix/daemon-socket/socket ] && return
  say "Nix cannot write /nix/store as $(id -un): run ./try.sh as root (a throwaway VM or container),"
  say "or make Nix single-user for you: sudo mkdir -p /nix && sudo chown -R $(id -un) /nix"
  exit 1
}

# The Nix settings alba needs for the example, in the environment only: flakes on; single-user
# (no build users, no sandbox: the builders are the host's /bin/sh); no binary cache (offline);
# every system of the example buildable on this machine.
nix_config() {
  export NIX_CONFIG="experimental-features = nix-command flakes
build-users-group =
substituters =
sandbox = false
extra-platforms = x86_64-linux aarch64-linux armv6l-linux
${NIX_CONFIG:-}"
}

# Sets ALBA to the alba binary: $ALBA if given, else a release build of this checkout.
build_alba() {
  if [ -n "${ALBA:-}" ]; then
    [ -x "$ALBA" ] || { say "ALBA=$ALBA is not an executable"; exit 1; }
    return
  fi
  command -v cargo >/dev/null || { say "cargo is missing: install Rust with rustup (https://rustup.rs), then run ./try.sh again"; exit 1; }
  say "building alba (cargo build --release)"
  (cd "$REPO" && cargo build --release --locked --quiet)
  # Cargo's own answer, so CARGO_TARGET_DIR or a configured target-dir is honoured.
  local target
  target=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps --offline |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  ALBA="${target:-$REPO/target}/release/alba"
}

# Publishes examples/hello into $OUT/dist: the release's targets are `file:dist`, relative to
# the folder alba runs in. `path:` reads the example as files, committed or not.
release() {
  mkdir -p "$OUT"
  say "releasing examples/hello $VERSION into $OUT/dist"
  (cd "$OUT" && "$ALBA" --flake "path:$REPO/examples/hello" release "$VERSION")
}

summary() {
  local dist=$OUT/dist
  cat <<EOF

Done: hello $VERSION is published in $dist
  $dist/df-dist-v1/   static binaries and their documents (df-dist-v1, as a download page reads them)
  $dist/v2/           the images, laid out as a static OCI registry

Look at it:
  cat $dist/df-dist-v1/hello/index.json $dist/df-dist-v1/hello/$VERSION/index.json
  $ALBA static ls -t hello file:$dist
  $ALBA container ls -t hello file:$dist

Serve the folder as a download site and a registry (nginx, then any pull client):
  server { listen 8080; include $dist/.alba/nginx.conf; }
  the download page is then http://localhost:8080/df-dist-v1/hello/ (every name: http://localhost:8080/df-dist-v1/)
  curl -fsSL http://localhost:8080/df-dist-v1/hello/install.sh | sh -s -- --base http://localhost:8080
  skopeo inspect --tls-verify=false docker://localhost:8080/hello:$VERSION
EOF
}

install_nix
check_nix_store
nix_config
build_alba
release
summary
