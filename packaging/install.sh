#!/usr/bin/env bash
# Builds cxrlens in release mode and installs it for the current user (default ~/.local) or into
# PREFIX: binary, desktop entry, icon and the sample study.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${PREFIX:-$HOME/.local}
source scripts/setup.sh
cargo build --locked --release
install -Dm755 target/release/cxrlens "$prefix/bin/cxrlens"
install -Dm644 packaging/cxrlens.desktop "$prefix/share/applications/cxrlens.desktop"
install -Dm644 packaging/cxrlens.svg "$prefix/share/icons/hicolor/scalable/apps/cxrlens.svg"
install -Dm644 assets/sample_chest.dcm "$prefix/share/cxrlens/sample_chest.dcm"
# Model bundles: found by the binary at <bin>/../share/cxrlens/models.
for bundle in models/*/; do
    name=$(basename "$bundle")
    # Every file of the bundle (weights, config, card, the out-of-distribution gate's statistics).
    for f in "$bundle"*; do
        [[ -f $f && $f != *checkpoint* ]] && install -Dm644 "$f" "$prefix/share/cxrlens/models/$name/$(basename "$f")"
    done
done
echo "installed to $prefix (run: cxrlens $prefix/share/cxrlens/sample_chest.dcm)"
