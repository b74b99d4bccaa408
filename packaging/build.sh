#!/usr/bin/env bash
# Builds the Debian package (cargo-deb, from [package.metadata.deb] in Cargo.toml) and a tar.gz of
# the same tree (bin/, share/cxrlens/models/, desktop entry, icon, sample) into dist/.
#   packaging/build.sh              release build (what to ship)
#   PROFILE=dev packaging/build.sh  the debug build (CI's install test: no second full build)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
profile=${PROFILE:-release}
# dpkg-shlibdeps (dpkg-dev) works out the shared libraries the binary links ($auto in depends).
if ! dpkg-query -W -f='${Status}' dpkg-dev 2>/dev/null | grep -q "install ok installed"; then
  sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null
fi
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb --version 3.8.0
cargo build --locked --profile "$profile"
target=$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
case $profile in dev) dir=debug ;; *) dir=$profile ;; esac
version=$(cargo metadata --format-version 1 --no-deps | grep -o '"version":"[^"]*"' | head -1 | cut -d'"' -f4)
mkdir -p dist
cargo deb --no-build --profile "$profile" --output dist/
# The tar.gz: the installed tree under cxrlens-VERSION/ (run bin/cxrlens from anywhere; the models
# are found at bin/../share/cxrlens/models).
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/cxrlens-$version"
install -Dm755 "$target/$dir/cxrlens" "$root/bin/cxrlens"
install -Dm644 packaging/cxrlens.desktop "$root/share/applications/cxrlens.desktop"
install -Dm644 packaging/cxrlens.svg "$root/share/icons/hicolor/scalable/apps/cxrlens.svg"
install -Dm644 assets/sample_chest.dcm "$root/share/cxrlens/sample_chest.dcm"
for bundle in models/*/; do
  name=$(basename "$bundle")
  for f in "$bundle"*; do
    [[ -f $f && $f != *checkpoint* ]] && install -Dm644 "$f" "$root/share/cxrlens/models/$name/$(basename "$f")"
  done
done
install -Dm644 README.md "$root/share/doc/cxrlens/README.md"
tar -C "$stage" -czf "dist/cxrlens-$version-$(uname -m)-linux.tar.gz" "cxrlens-$version"
ls -l dist/
