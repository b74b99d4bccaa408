#!/usr/bin/env bash
# The test command (README): installs what is missing, then runs every test.
# Needs ../shared/data beside the checkout (or CXRLENS_SHARED_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --locked "$@"
