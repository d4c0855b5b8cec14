#!/usr/bin/env bash
# The test command of alba.
#
#   tests/run.sh [cargo test args...]      e.g. tests/run.sh --test it harness_selftest:: -- --nocapture
#
# The integration tests are one binary, `it` (tests/it/main.rs, one module per subject);
# the benchmark, tests/bench/main.rs, is its own (all #[ignore]; bench/run.sh runs it).
#
# On Debian 12 (as root, or with sudo) it first installs whatever the integration tests
# need and is missing, then runs `cargo fmt --check`, `cargo clippy` (warnings are errors)
# and `cargo test`. It is idempotent and prints nothing of its own when all is present.
#
# - Debian packages: nix-bin skopeo containerd docker-registry nginx apache2-utils rclone time
#   docker.io podman debootstrap minisign groff-base git openssh-server openssh-client
#   chromium shellcheck busybox openssl curl wget
#   (sshd is the Nix remote builder of tests/common/remote_builder.rs; its service is kept off;
#   chromium, the shells, curl and wget check the download site and install.sh)
#   (`apt-get update` runs only if an install fails without it).
# - PyPI: cyclonedx-python-lib[json-validation] (the CycloneDX schema validator the SBOM
#   tests use) and PyNaCl (the signature tests make a cosign.key with it), installed with pip
#   unless python3 can import them already.
# - Garage 2.5.0 is built once into ~/.cache/garage-2.5.0 (~15-25 min); set ALBA_GARAGE to
#   use another garage 2.x binary instead.
# - A current Nix (Debian trixie's nix-bin, 2.26) is put once into a debootstrap chroot at
#   ~/.cache/alba-nix-trixie (~1-2 min, ~400 MB; root or sudo); set ALBA_NIX_CHROOT to use
#   another. debootstrap picks the Debian mirror itself (its default); ALBA_DEBIAN_MIRROR
#   overrides it. It also holds trixie's skopeo 1.18, which verifies cosign signatures
#   (added to an older chroot that lacks it).
#   Tests run alba with both Nix versions; see tests/common/nix_chroot.rs.
# - Nix: the tests pass their settings in NIX_CONFIG (Nix 2.8 honours it), so no
#   /etc/nix/nix.conf change is needed; see tests/common/nix.rs.
# - A missing service fails its test (naming what to install); ALBA_ALLOW_SKIP=1 makes it
#   print SKIP and pass instead, except with CI=true, where nothing is skipped.
# - With CI=true, cargo builds into ${CARGO_TARGET_DIR:-~/.cache/alba-target} (cacheable,
#   outside the checkout).
set -euo pipefail

cd "$(dirname "$0")/.."

PACKAGES=(nix-bin skopeo containerd docker-registry nginx apache2-utils rclone time docker.io podman debootstrap minisign groff-base git openssh-server openssh-client chromium shellcheck busybox openssl curl wget)
GARAGE_VERSION=2.5.0
GARAGE_ROOT="$HOME/.cache/garage-$GARAGE_VERSION"
NIX_CHROOT="${ALBA_NIX_CHROOT:-$HOME/.cache/alba-nix-trixie}"

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

# Prints the mount points at or below $1, deepest first.
mounts_below() {
  awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r
}

# Runs `nix --version` inside chroot $1 (Nix 2.26 needs /proc and /dev there); the mounts live
# in a private mount namespace that ends with the command, so nothing stays mounted.
chroot_nix_version() {
  as_root unshare --mount --propagation private sh -c \
    'mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" && chroot "$1" nix --version' \
    sh "$1"
}

# Creates the Nix 2.26 chroot at NIX_CHROOT unless it is there. debootstrap works in a temp
# folder renamed at the end, so a killed run never leaves a half chroot under the final name.
install_nix_chroot() {
  [ -x "$NIX_CHROOT/usr/bin/nix" ] && return
  local tmp="$NIX_CHROOT.tmp" log="$NIX_CHROOT.log" m version=
  say "creating the Nix 2.26 chroot $NIX_CHROOT (once; takes ~2 min)"
  # A killed debootstrap may leave proc/sys (or a bind of /dev) mounted in tmp: unmount those
  # first, and never let rm cross into a mount (a bound /dev would lose the host's devices).
  for m in $(mounts_below "$tmp"); do as_root umount -l "$m"; done
  as_root rm -rf --one-file-system "$tmp"
  mkdir -p "$(dirname "$NIX_CHROOT")"
  # It ends with exit 1: libdbd-sqlite3-perl cannot be configured in trixie (perl-dbdabi-94
  # missing), leaving nix-bin "unconfigured"; the nix binary works regardless (only its perl
  # bindings need that package), so success is judged by running it below.
  # The mirror is debootstrap's default unless ALBA_DEBIAN_MIRROR names one: the project
  # names no package host of its own.
  local mirror=()
  [ -n "${ALBA_DEBIAN_MIRROR:-}" ] && mirror=("$ALBA_DEBIAN_MIRROR")
  as_root debootstrap --variant=minbase --include=nix-bin,git,ca-certificates,skopeo \
    trixie "$tmp" "${mirror[@]}" >"$log" 2>&1 || true
  for m in $(mounts_below "$tmp"); do as_root umount -l "$m"; done
  if [ -x "$tmp/usr/bin/nix" ]; then
    # Tests reach services as localhost; a minbase chroot has no /etc/hosts.
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' |
      as_root tee "$tmp/etc/hosts" >/dev/null
    version=$(chroot_nix_version "$tmp" 2>>"$log" || true)
  fi
  case "${version:-}" in
    "nix (Nix) 2."*) as_root mv "$tmp" "$NIX_CHROOT" ;;
    *)
      tail -20 "$log" >&2
      say "debootstrap made no chroot whose nix runs (full log: $log)"
      exit 1
      ;;
  esac
}

# Adds trixie's skopeo (it verifies cosign signatures; Debian 12's is built without sigstore)
# to a chroot made before it was in debootstrap's --include. A debootstrap chroot needs
# `apt-get -f install` (nix-bin is left unconfigured, see above) before more packages go in.
install_chroot_skopeo() {
  [ -x "$NIX_CHROOT/usr/bin/skopeo" ] && return
  say "adding skopeo to the Nix 2.26 chroot $NIX_CHROOT"
  as_root unshare --mount --propagation private sh -c \
    'mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" &&
     chroot "$1" env DEBIAN_FRONTEND=noninteractive sh -c "apt-get update -q && apt-get -f install -y -q; apt-get install -y -q skopeo"' \
    sh "$NIX_CHROOT" >>"$NIX_CHROOT.log" 2>&1 || true
  [ -x "$NIX_CHROOT/usr/bin/skopeo" ] || {
    tail -20 "$NIX_CHROOT.log" >&2
    say "could not install skopeo in $NIX_CHROOT (full log: $NIX_CHROOT.log)"
    exit 1
  }
}

# Installs the CycloneDX validator (offline schema validation of alba's SBOMs).
install_python_packages() {
  if ! python3 -c 'import cyclonedx.validation.json' 2>/dev/null; then
    say "installing cyclonedx-python-lib (pip)"
    python3 -m pip install --quiet --disable-pip-version-check 'cyclonedx-python-lib[json-validation]' >&2
  fi
  # PyNaCl makes a cosign.key the way cosign does (scrypt + nacl/secretbox) in the tests.
  if ! python3 -c 'import nacl.secret' 2>/dev/null; then
    say "installing PyNaCl (pip)"
    python3 -m pip install --quiet --disable-pip-version-check pynacl >&2
  fi
  # securesystemslib verifies the DSSE envelopes of alba's SLSA provenance (tests/it/provenance.rs).
  if ! python3 -c 'import securesystemslib.dsse, cryptography' 2>/dev/null; then
    say "installing securesystemslib (pip)"
    python3 -m pip install --quiet --disable-pip-version-check 'securesystemslib[crypto]' >&2
  fi
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
install_nix_chroot
install_chroot_skopeo
install_python_packages

if [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/alba-target}"
fi

cargo fmt --check
cargo clippy --all-targets --locked --quiet -- -D warnings
cargo test --locked "$@"
