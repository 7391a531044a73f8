#!/usr/bin/env bash
# The test command: sets up what the tests need (scripts/setup.sh), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# `failpoints` compiles the fault-injection points in (tests only; the shipped binary has none).
cargo test --locked --features failpoints "$@"
