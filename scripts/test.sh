#!/usr/bin/env bash
# Builds, lints and tests the whole workspace — what CI runs (.ci/run).
#   1. scripts/install-deps.sh (system packages, Rust)
#   2. cargo build --workspace --all-targets
#   3. cargo fmt --all -- --check
#   4. cargo clippy --workspace --all-targets -- -D warnings
#   5. cargo nextest run --workspace (plus the doctests, which nextest does not run),
#      or cargo test --workspace when cargo-nextest is not installed
# Arguments are passed to the test runner (e.g. a test name filter).
# Exits non-zero on the first failing step.
set -euo pipefail

cd "$(dirname "$0")/.."

step() {
    echo "==> $*" >&2
    "$@" || {
        status=$?
        echo "==> FAILED ($status): $*" >&2
        exit "$status"
    }
}

step scripts/install-deps.sh
# A Rust just installed by install-deps.sh is not on this shell's PATH yet.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "==> FAILED: cargo not found" >&2; exit 1; }

step cargo build --workspace --all-targets
step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
    step cargo nextest run --workspace --no-fail-fast "$@"
    if [ "$#" -eq 0 ]; then
        step cargo test --workspace --doc
    fi
else
    step cargo test --workspace --no-fail-fast "$@"
fi
echo "==> all steps passed" >&2
