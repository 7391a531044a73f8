#!/usr/bin/env bash
# Installs what the tests and CI need that the Rust toolchain does not bring, into .venv/ of this
# checkout: moto_server (S3, SQS, SNS and EventBridge on loopback) and cfn-lint in .venv/ itself,
# checkov (template security checks) in a venv of its own, .venv/checkov/, because checkov pins
# boto3 to an exact old release that moto_server must not be downgraded to. Idempotent and quick
# when already done. Needs only Python 3.11 with pip and the package registries. The stamp's name
# changes whenever the lists below do, so an existing .venv/ gets the new packages on its next run.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
stamp="$venv/.installed-v2"
if [ -f "$stamp" ]; then
  exit 0
fi
pip_install() {
  "$1/bin/pip" install --quiet --disable-pip-version-check "${@:2}"
}
python3 -m venv "$venv"
pip_install "$venv" 'moto[server]==5.1.*' 'cfn-lint==1.*'
python3 -m venv "$venv/checkov"
pip_install "$venv/checkov" 'checkov>=3.3.30,<3.4'
"$venv/bin/moto_server" --help >/dev/null
"$venv/bin/cfn-lint" --version >/dev/null
"$venv/checkov/bin/checkov" --version >/dev/null
touch "$stamp"
echo "setup: moto_server and cfn-lint installed in $venv, checkov in $venv/checkov" >&2
