#!/usr/bin/env bash
# The test command of alba.
#
#   tests/run.sh [cargo test args...]      e.g. tests/run.sh --test harness_selftest -- --nocapture
#
# On Debian 12 (as root, or with sudo) it first installs whatever the integration tests
# need and is missing, then runs `cargo fmt --check`, `cargo clippy` (warnings are errors)
# and `cargo test`. It is idempotent and prints nothing of its own when all is present.
#
# - Debian packages: nix-bin skopeo containerd docker-registry nginx apache2-utils rclone time
#   (`apt-get update` runs only if an install fails without it).
# - Garage 2.5.0 is built once into ~/.cache/garage-2.5.0 (~15-25 min); set ALBA_GARAGE to
#   use another garage 2.x binary instead.
# - Nix: the tests pass their settings in NIX_CONFIG (Nix 2.8 honours it), so no
#   /etc/nix/nix.conf change is needed; see tests/common/nix.rs.
# - With CI=true, cargo builds into ${CARGO_TARGET_DIR:-~/.cache/alba-target} (cacheable,
#   outside the checkout), and a missing service fails a test instead of skipping it.
set -euo pipefail

cd "$(dirname "$0")/.."

PACKAGES=(nix-bin skopeo containerd docker-registry nginx apache2-utils rclone time)
GARAGE_VERSION=2.5.0
GARAGE_ROOT="$HOME/.cache/garage-$GARAGE_VERSION"

say() { echo "tests/run.sh: $*" >&2; }

# Runs a command as root (directly, or through sudo).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Prints the packages of PACKAGES that dpkg does not have installed.
missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}

# Installs missing Debian packages without starting their system services.
install_packages() {
  command -v dpkg-query >/dev/null || { say "not Debian: install ${PACKAGES[*]} yourself"; return; }
  local missing
  mapfile -t missing < <(missing_packages)
  [ "${#missing[@]}" = 0 ] && return
  say "installing ${missing[*]}"
  local policy=/usr/sbin/policy-rc.d added_policy=
  if [ ! -e "$policy" ]; then
    # Keep nginx, containerd and docker-registry from starting as services: tests run their own.
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    added_policy=1
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}")
  if ! as_root "${apt[@]}" >/tmp/alba-apt.log 2>&1; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>/tmp/alba-apt.log 2>&1
    if ! as_root "${apt[@]}" >>/tmp/alba-apt.log 2>&1; then
      [ -z "$added_policy" ] || as_root rm -f "$policy"
      cat /tmp/alba-apt.log >&2
      exit 1
    fi
  fi
  [ -z "$added_policy" ] || as_root rm -f "$policy"
}

# Builds Garage into GARAGE_ROOT unless ALBA_GARAGE or a cached build is there.
install_garage() {
  if [ -n "${ALBA_GARAGE:-}" ]; then
    [ -x "$ALBA_GARAGE" ] || { say "ALBA_GARAGE=$ALBA_GARAGE is not an executable"; exit 1; }
    return
  fi
  [ -x "$GARAGE_ROOT/bin/garage" ] && return
  say "building garage $GARAGE_VERSION into $GARAGE_ROOT (once; takes ~15-25 min)"
  cargo install garage --locked --version "$GARAGE_VERSION" --root "$GARAGE_ROOT" --quiet
}

# Adds rustfmt and clippy when the toolchain lacks them.
install_components() {
  cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1 && return
  say "adding rustfmt and clippy"
  rustup component add rustfmt clippy
}

install_packages
install_components
install_garage

if [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/alba-target}"
fi

cargo fmt --check
cargo clippy --all-targets --locked --quiet -- -D warnings
cargo test --locked "$@"
