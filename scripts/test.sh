#!/usr/bin/env bash
# The project's one test command (README.md "Run the tests"; .ci/run calls it after the set-up):
# formatting, lints with warnings as errors, the API docs without warnings, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo "== $*" >&2; }
step "cargo fmt --all --check"
cargo fmt --all --check
step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo doc --workspace --no-deps (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
step "cargo test --workspace"
cargo test --workspace
