#!/bin/sh
# Installs @NAME_TEXT@ from the download site alba wrote; rewritten at every release, rm and gc.
#   curl -fsSL <site>/df-dist-v1/<name>/install.sh | sh
#   curl -fsSL <site>/df-dist-v1/<name>/install.sh | sh -s -- --version X --to DIR
# Verifies the binary against SHA256SUMS, and SHA256SUMS against its minisign signature when
# minisign is installed. Every failure exits non-zero and installs nothing.
set -u

NAME=@NAME@
BASE=@BASE@
LATEST=@LATEST@
PUBKEY=@PUBKEY@
# The latest stable version's files: "<platform> <path below the tag folder>", one a line.
LATEST_FILES=@LATEST_FILES@

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
usage() {
  cat <<EOF
Installs $NAME (latest stable: ${LATEST:-none}).
Options:
  --version X            install version X instead of the latest stable one
  --to DIR               install into DIR (default: ~/.local/bin)
  --base URL             the site's address, the folder that holds df-dist-v1/
  --require-signature    fail unless SHA256SUMS.minisig is checked with minisign
EOF
}

version=''
to=''
base=$BASE
require_signature=0
while [ $# -gt 0 ]; do
  case $1 in
    --version|--to|--base)
      [ $# -ge 2 ] || { say "$1 needs a value"; exit 2; }
      case $1 in
        --version) version=$2 ;;
        --to) to=$2 ;;
        --base) base=$2 ;;
      esac
      shift 2 ;;
    --version=*) version=${1#*=}; shift ;;
    --to=*) to=${1#*=}; shift ;;
    --base=*) base=${1#*=}; shift ;;
    --require-signature) require_signature=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) say "unknown option $1 (see --help)"; exit 2 ;;
  esac
done

if [ -z "$to" ]; then
  [ -n "${HOME:-}" ] || die "HOME is not set: pass --to DIR"
  to=$HOME/.local/bin
fi
[ -n "$version" ] || version=$LATEST
[ -n "$version" ] || die "$NAME has no stable version yet: pass --version X"
case $version in
  */*|.*|'') die "--version $version is not a version" ;;
esac
[ -n "$base" ] || die "this install.sh does not know the site's address: pass --base URL (the address that serves df-dist-v1/)"
base=${base%/}

# The platform, in the names the tag folders use.
os=$(uname -s) || die "uname -s failed"
machine=$(uname -m) || die "uname -m failed"
case $os in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  FreeBSD) os=freebsd ;;
  *) os=$(printf '%s' "$os" | tr '[:upper:]' '[:lower:]') ;;
esac
case $machine in
  x86_64|amd64) arch=amd64 ;;
  aarch64|arm64) arch=arm64 ;;
  armv6l|armv6*) arch=arm/v6 ;;
  armv7l|armv7*) arch=arm/v7 ;;
  i686|i586|i486|i386) arch=386 ;;
  *) arch=$machine ;;
esac
platform=$os/$arch

if command -v curl >/dev/null 2>&1; then
  fetch() { curl -fsSL --retry 2 -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
  fetch() { wget -q -O "$2" "$1"; }
else
  die "neither curl nor wget is installed"
fi
if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
  die "neither sha256sum nor shasum is installed: cannot check the download"
fi

tmp=$(mktemp -d 2>/dev/null || mktemp -d -t alba-install) || die "cannot make a temporary folder"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP

url=$base/df-dist-v1/$NAME/$version
fetch "$url/SHA256SUMS" "$tmp/SHA256SUMS" || die "cannot download $url/SHA256SUMS (is $NAME $version published at $base?)"

# The files of this platform: from the embedded table for the latest stable version, else from
# SHA256SUMS (<os>/<arch>/<file>, or <os>/<arch>/<variant>/<file> where two variants share a folder).
paths=''
published=''
if [ "$version" = "$LATEST" ] && [ -n "$LATEST_FILES" ]; then
  paths=$(printf '%s\n' "$LATEST_FILES" | while read -r p path; do [ "$p" = "$platform" ] && printf '%s\n' "$path"; done)
  published=$(printf '%s\n' "$LATEST_FILES" | while read -r p _; do printf '%s\n' "$p"; done | sort -u | tr '\n' ' ')
else
  dir=$os/${arch%%/*}
  variant=''
  case $arch in */*) variant=${arch#*/} ;; esac
  all=$(while read -r _ path; do printf '%s\n' "$path"; done <"$tmp/SHA256SUMS")
  if [ -n "$variant" ]; then
    paths=$(printf '%s\n' "$all" | while read -r path; do
      case $path in "$dir/$variant/"*/*) ;; "$dir/$variant/"*) printf '%s\n' "$path" ;; esac
    done)
  fi
  if [ -z "$paths" ]; then
    paths=$(printf '%s\n' "$all" | while read -r path; do
      case $path in "$dir/"*/*) ;; "$dir/"*) printf '%s\n' "$path" ;; esac
    done)
  fi
  published=$(printf '%s\n' "$all" | while read -r path; do printf '%s\n' "${path%/*}"; done | sort -u | tr '\n' ' ')
fi
[ -n "$paths" ] || die "$NAME $version has no binary for $platform (uname: $(uname -s) $machine); published: ${published:-nothing}"

# The signature of SHA256SUMS.
if command -v minisign >/dev/null 2>&1 && [ -n "$PUBKEY" ]; then
  if fetch "$url/SHA256SUMS.minisig" "$tmp/SHA256SUMS.minisig"; then
    minisign -Vm "$tmp/SHA256SUMS" -x "$tmp/SHA256SUMS.minisig" -P "$PUBKEY" -q ||
      die "bad signature: SHA256SUMS of $NAME $version does not match its minisign signature"
    say "signature of SHA256SUMS checked"
  elif [ "$require_signature" = 1 ]; then
    die "cannot download $url/SHA256SUMS.minisig, and --require-signature is given"
  else
    say "no signature downloaded for $NAME $version: the signature was not checked"
  fi
elif [ "$require_signature" = 1 ]; then
  if [ -z "$PUBKEY" ]; then
    die "--require-signature: this site names no minisign public key for $NAME"
  fi
  die "--require-signature: minisign is not installed (https://jedisct1.github.io/minisign/)"
else
  say "the signature was not checked (minisign is not installed, or no public key is published)"
fi

# Download and check every file first; install only when all are right. One path a line:
# a file name may hold spaces, and no name is globbed.
nl='
'
IFS=$nl
set -f
mkdir -p "$tmp/files" || die "cannot write $tmp"
for path in $paths; do
  file=${path##*/}
  fetch "$url/$path" "$tmp/files/$file" || die "cannot download $url/$path"
  want=$(while IFS=' ' read -r sum p; do [ "$p" = "$path" ] && printf '%s' "$sum"; done <"$tmp/SHA256SUMS")
  [ -n "$want" ] || die "$path is not in SHA256SUMS"
  got=$(sha256 "$tmp/files/$file") || die "cannot hash $file"
  [ "$got" = "$want" ] || die "checksum mismatch for $path: SHA256SUMS says $want, the download is $got"
done

mkdir -p "$to" || die "cannot create $to"
staged=''
for path in $paths; do
  file=${path##*/}
  part=$to/.$file.install-$$
  if ! cp "$tmp/files/$file" "$part" || ! chmod 755 "$part"; then
    rm -f "$part"
    for s in $staged; do rm -f "$s"; done
    die "cannot write $part (no space left, or no permission?): nothing installed"
  fi
  staged="$staged$nl$part"
done
for path in $paths; do
  file=${path##*/}
  mv -f "$to/.$file.install-$$" "$to/$file" || die "cannot move $file into $to"
  say "installed $NAME $version ($platform) to $to/$file"
done
unset IFS
set +f
case ":${PATH:-}:" in
  *":$to:"*) ;;
  *) say "$to is not on your PATH; add it, e.g. export PATH=\"$to:\$PATH\"" ;;
esac
