#!/usr/bin/env bash
# Installs the .deb from dist/ on this machine (apt resolves its dependencies), runs the installed
# binary on the installed sample with the installed models, removes the package; then unpacks the
# tar.gz into a temporary folder and does the same from there. Needs root (or sudo) for the .deb.
# Run packaging/build.sh first (CI: PROFILE=dev packaging/build.sh && packaging/test-install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
deb=$(ls -t dist/cxrlens_*.deb | head -1)
tarball=$(ls -t dist/cxrlens-*-linux.tar.gz | head -1)
fail() { echo "test-install: $*" >&2; exit 1; }
# The source tree's models/ must not be what the installed binary finds.
export CXRLENS_MODELS=/nonexistent
home=$(mktemp -d)
export XDG_DATA_HOME="$home/data" XDG_CONFIG_HOME="$home/config"
cleanup() {
  "${sudo_cmd[@]}" dpkg -r cxrlens >/dev/null 2>&1 || true
  rm -rf "$home"
}
trap cleanup EXIT

check() {  # check BIN SHARE: version, inspect and analyze from the installed paths
  local bin=$1 share=$2
  "$bin" --version | grep -q "^cxrlens " || fail "$bin --version"
  "$bin" inspect "$share/sample_chest.dcm" | grep -q "613" || fail "$bin inspect on $share/sample_chest.dcm"
  local out status=0
  out=$("$bin" --backend flex analyze "$share/sample_chest.dcm") || status=$?
  # 0: analysed; 3: analysed, outside a model's training data (the adult sample vs the
  # paediatric classifier).
  [[ $status == 0 || $status == 3 ]] || fail "analyze exited $status: $out"
  local models
  models=$(readlink -f "$share/models")
  grep -q "model: *lung-unet .* from $models/lung-unet" <<<"$out" || fail "lung-unet not loaded from $models: $out"
  grep -q "model: *pneumonia-effnet .* from $models/pneumonia-effnet" <<<"$out" || fail "pneumonia-effnet not loaded from $models"
  echo "test-install: $bin: version, inspect and analyze with the models of $models: ok"
}

DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "./$deb" >/dev/null
dpkg -L cxrlens | grep -qx /usr/share/applications/cxrlens.desktop || fail "desktop entry not installed"
dpkg -L cxrlens | grep -qx /usr/share/icons/hicolor/scalable/apps/cxrlens.svg || fail "icon not installed"
check /usr/bin/cxrlens /usr/share/cxrlens
"${sudo_cmd[@]}" dpkg -r cxrlens >/dev/null
[[ ! -e /usr/bin/cxrlens ]] || fail "dpkg -r left /usr/bin/cxrlens"

tar -C "$home" -xzf "$tarball"
root=$(ls -d "$home"/cxrlens-*/)
check "$root/bin/cxrlens" "$root/share/cxrlens"
echo "test-install: $deb and $tarball: ok"
