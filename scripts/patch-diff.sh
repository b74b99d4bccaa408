#!/usr/bin/env bash
# Writes patches/burn-flex.diff: the vendored burn-flex (patches/burn-flex) against the crate
# published on crates.io (cargo's registry copy), as a git diff of crates/burn-flex for upstream.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/patches/burn-flex/Cargo.toml" | head -1)
upstream=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/burn-flex-"$version" 2>/dev/null | head -1 || true)
if [[ -z $upstream ]]; then
  echo "burn-flex $version is not in cargo's registry: run 'cargo fetch' in a project depending on it" >&2
  exit 1
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/a/crates" "$tmp/b/crates"
cp -r "$upstream" "$tmp/a/crates/burn-flex"
cp -r "$root/patches/burn-flex" "$tmp/b/crates/burn-flex"
rm -f "$tmp"/a/crates/burn-flex/.cargo-ok "$tmp"/b/crates/burn-flex/PATCH.md
# --no-prefix keeps the a/ and b/ of the folder names: `git apply` (-p1) in burn's repository.
(cd "$tmp" && git diff --no-index --no-prefix a/crates b/crates || true) > "$root/patches/burn-flex.diff"
echo "patches/burn-flex.diff: $(grep -c '^[-+][^-+]' "$root/patches/burn-flex.diff") changed lines against $upstream"
