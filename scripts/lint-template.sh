#!/usr/bin/env bash
# Checks the SAM template twice: cfn-lint (from .venv/) for validity, then checkov (from
# .venv/checkov/) for security settings; scripts/setup.sh installs both. Fails on any cfn-lint
# finding and on any failed checkov check. A check that does not apply is skipped in the
# resource's Metadata (checkov: skip: id + comment), with the reason, never here.
# Extra arguments go to cfn-lint. Exit status: cfn-lint's when it fails (2 errors, 4 warnings,
# 8 informational, OR-ed), 1 when a checkov check fails, 2 when a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
lint=.venv/bin/cfn-lint
checkov=.venv/checkov/bin/checkov
for tool in "$lint" "$checkov"; do
  if [ ! -x "$tool" ]; then
    echo "lint-template: $tool is missing. Run scripts/setup.sh first (it installs cfn-lint and checkov into .venv/)." >&2
    exit 2
  fi
done
rc=0
"$lint" template.yaml "$@" || rc=$?
if [ "$rc" -ne 0 ]; then
  echo "lint-template: cfn-lint found problems in template.yaml (see above; exit status $rc)." >&2
  exit "$rc"
fi
echo "lint-template: template.yaml is clean (cfn-lint $("$lint" --version | awk '{print $2}'))." >&2
# Offline: --skip-download keeps checkov from fetching guideline links from its vendor's API.
report=$("$checkov" -f template.yaml --framework cloudformation --skip-download --compact) || rc=$?
if [ "$rc" -ne 0 ]; then
  printf '%s\n' "$report" >&2
  echo "lint-template: checkov failed checks in template.yaml (see above)." >&2
  exit 1
fi
summary=$(printf '%s\n' "$report" | grep -m1 '^Passed checks:' || true)
echo "lint-template: checkov $("$checkov" --version) passes template.yaml (${summary:-no summary})." >&2
