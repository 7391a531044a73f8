#!/usr/bin/env bash
# The deploy path as users build it (docs/DEPLOY.md), checked end to end for x86_64:
#
#   1. `cargo lambda build --release`                     -> target/deploy-check/cargo-lambda/bootstrap
#   2. `sam build` on template.yaml, Architecture=x86_64 (SAM's rust-cargolambda build method runs
#      cargo lambda for it)                               -> target/deploy-check/sam/Function/bootstrap
#   3. each bootstrap under the Runtime API double on events/sqs-s3.json, against moto_server
#      (tests/it/deploy_artifact.rs): no batch item failure, a complete manifest per object, and
#      no demo in the artifact.
#
# Then prints each artifact's size, stripped size and cold start (scripts/cold_start.py).
# aws-sam-cli, cargo-lambda and ziglang (cargo-lambda links with Zig) come from PyPI into a venv
# of their own, .venv/sam/ (SAM_VENV overrides it), installed once; scripts/setup.sh installs
# moto_server. arm64, the template's default, is not built here: this machine has no aarch64 Rust
# target (docs/DEPLOY.md). Exit status: non-zero when a build or a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
venv=${SAM_VENV:-.venv/sam}
stamp="$venv/.installed-v1"
if [ ! -f "$stamp" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'aws-sam-cli==1.170.*' 'cargo-lambda==1.9.*' 'ziglang==0.17.*'
  touch "$stamp"
fi
# cargo finds `cargo-lambda` on PATH, and cargo-lambda finds Zig as `python3 -m ziglang`.
PATH="$(cd "$venv" && pwd)/bin:$PATH"
export PATH
# No telemetry and no update check: SAM must not reach out of this machine.
export SAM_CLI_TELEMETRY=0 SAM_CLI_DISABLE_VERSION_CHECK=1
out=target/deploy-check
rm -rf "$out"
mkdir -p "$out/cargo-lambda"

echo "sam-build: cargo lambda build --release (x86_64)" >&2
cargo lambda build --release --x86-64 --locked
cp target/lambda/export-fetcher/bootstrap "$out/cargo-lambda/bootstrap"

echo "sam-build: sam build --parameter-overrides Architecture=x86_64" >&2
# Older SAM CLI releases ask to opt in to the rust-cargolambda build method; both switches do it.
SAM_CLI_BETA_RUST_CARGO_LAMBDA=1 sam build --beta-features \
  --template-file template.yaml --build-dir "$out/sam" \
  --parameter-overrides Architecture=x86_64 2>&1 | tee "$out/sam-build.log"
grep -q 'architecture: x86_64 functions: Function$' "$out/sam-build.log" || {
  echo "sam-build: sam build did not build the function for x86_64 (see $out/sam-build.log)" >&2
  exit 1
}

artifacts=("$out/cargo-lambda/bootstrap" "$out/sam/Function/bootstrap")
for artifact in "${artifacts[@]}"; do
  echo "sam-build: $artifact under the Runtime API double" >&2
  log="$out/test-$(basename "$(dirname "$artifact")").log"
  EXPORT_FETCHER_BOOTSTRAP="$PWD/$artifact" \
    cargo test --locked --features failpoints --test it deploy_artifact -- --nocapture 2>&1 | tee "$log"
  if grep -q 'skipped' "$log" || ! grep -q '^test deploy_artifact::built_artifact_serves_a_real_sqs_batch ... ok' "$log"; then
    echo "sam-build: the check of $artifact did not run and pass" >&2
    exit 1
  fi
done

for artifact in "${artifacts[@]}"; do
  strip -o "$out/stripped" "$artifact"
  printf 'sam-build: %s: %.1f MB, %.1f MB stripped, cold start %s ms (median of 5)\n' \
    "$artifact" "$(stat -c %s "$artifact" | awk '{print $1 / 1e6}')" \
    "$(stat -c %s "$out/stripped" | awk '{print $1 / 1e6}')" \
    "$(python3 scripts/cold_start.py "$artifact")"
done
rm -f "$out/stripped"
echo "sam-build: both artifacts build and serve the event" >&2
