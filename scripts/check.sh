#!/usr/bin/env bash
# What CI runs: formatting, clippy with warnings as errors, then the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
scripts/test.sh
