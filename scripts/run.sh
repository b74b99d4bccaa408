#!/usr/bin/env bash
# The run command (README): installs what is missing, builds in release mode and opens the bundled
# sample study (or the path given).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
if [[ $# -eq 0 ]]; then set -- assets/sample_chest.dcm; fi
exec cargo run --locked --release -- "$@"
