#!/usr/bin/env bash
# Installs what the tests need that the Rust toolchain does not bring: moto_server (S3, SQS, SNS
# and EventBridge on loopback) and cfn-lint, into .venv/ of this checkout. Idempotent and quick
# when already done. Needs only Python 3.11 with pip and the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
stamp="$venv/.installed-v1"
if [ -f "$stamp" ]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  'moto[server]==5.1.*' 'cfn-lint==1.*'
"$venv/bin/moto_server" --help >/dev/null
touch "$stamp"
echo "setup: moto_server and cfn-lint installed in $venv" >&2
