#!/usr/bin/env bash
# What CI runs: formatting, clippy with warnings as errors, the README's test command, then the
# packaging test (the .deb and tar.gz built from the test build, installed, run, removed).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
scripts/test.sh
PROFILE=dev packaging/build.sh
packaging/test-install.sh
