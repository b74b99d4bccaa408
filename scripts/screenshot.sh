#!/usr/bin/env bash
# Runs the app under Xvfb on a file and saves a screenshot: scripts/screenshot.sh FILE OUT.png [seconds] [extra args]
set -euo pipefail
command -v import >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends imagemagick >/dev/null
file=$1; out=$2; wait_s=${3:-8}; shift 3 || true
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg-cxrlens}; mkdir -p "$XDG_RUNTIME_DIR"; chmod 700 "$XDG_RUNTIME_DIR"
bin=${CXRLENS_BIN:-target/debug/cxrlens}
Xvfb :77 -screen 0 1400x900x24 >/dev/null 2>&1 & xvfb=$!
trap 'kill $app $xvfb 2>/dev/null || true' EXIT
sleep 1
DISPLAY=:77 "$bin" "$file" "$@" > /tmp/cxrlens-screenshot.log 2>&1 & app=$!
sleep "$wait_s"
DISPLAY=:77 import -window root "$out"
echo "saved $out"
