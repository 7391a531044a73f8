#!/usr/bin/env bash
# Lints the SAM template with cfn-lint from .venv/ (scripts/setup.sh installs it there).
# Extra arguments go to cfn-lint. Exit status: cfn-lint's (0 = clean; 2 errors, 4 warnings,
# 8 informational, OR-ed), or 2 when cfn-lint is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
lint=.venv/bin/cfn-lint
if [ ! -x "$lint" ]; then
  echo "lint-template: $lint is missing. Run scripts/setup.sh first (it installs cfn-lint into .venv/)." >&2
  exit 2
fi
rc=0
"$lint" template.yaml "$@" || rc=$?
if [ "$rc" -ne 0 ]; then
  echo "lint-template: cfn-lint found problems in template.yaml (see above; exit status $rc)." >&2
  exit "$rc"
fi
echo "lint-template: template.yaml is clean (cfn-lint $("$lint" --version | awk '{print $2}'))." >&2
