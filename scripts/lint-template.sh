#!/usr/bin/env bash
# Checks the SAM template three times: cfn-lint (from .venv/) for validity, a few assertions on
# its delivery guarantees (below), then checkov (from .venv/checkov/) for security settings;
# scripts/setup.sh installs both tools. Fails on any cfn-lint
# finding and on any failed checkov check. A check that does not apply is skipped in the
# resource's Metadata (checkov: skip: id + comment), with the reason, never here.
# Extra arguments go to cfn-lint. Exit status: cfn-lint's when it fails (2 errors, 4 warnings,
# 8 informational, OR-ed), 1 when a guarantee or a checkov check fails, 2 when a tool is missing.
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
# The template's delivery guarantees, which neither tool knows about (docs/DEPLOY.md explains each).
.venv/bin/python - template.yaml <<'PY' || { echo "lint-template: template.yaml breaks a delivery guarantee (see above)." >&2; exit 1; }
import json, sys
from cfnlint.decode import decode_str
t, problems = decode_str(open(sys.argv[1]).read())
assert not problems, problems
P, R = t["Parameters"], t["Resources"]
bad = []
def check(ok, what):
    if not ok:
        bad.append(what)
def j(x):
    return json.dumps(x, sort_keys=True)
for name, res in R.items():
    if res["Type"] == "AWS::SNS::Topic":
        check("KmsMasterKeyId" in res["Properties"], f"SNS topic {name} is not encrypted (KmsMasterKeyId)")
check(P["ManifestTopicKmsKeyId"]["Default"] == "alias/aws/sns", "the manifest topic's key defaults to alias/aws/sns")
check(j(R["TriggerQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"]) == j({"Ref": "MaxReceiveCount"})
      and int(P["MaxReceiveCount"]["MinValue"]) >= 3, "maxReceiveCount is the MaxReceiveCount parameter, at least 3")
fn = R["Function"]["Properties"]
check(j(fn["Events"]["Notifications"]["Properties"]["ScalingConfig"]["MaximumConcurrency"]) == j({"Ref": "MaximumConcurrency"})
      and "ReservedConcurrency" in j(fn["ReservedConcurrentExecutions"]),
      "the SQS trigger's MaximumConcurrency and the function's reservation come from their parameters")
check(any(j(a["Assert"]) == j({"Fn::Equals": [{"Ref": "MaximumConcurrency"}, {"Ref": "ReservedConcurrency"}]})
          and "ReservedConcurrency" in j(rule.get("RuleCondition"))
          for rule in t.get("Rules", {}).values() for a in rule["Assertions"]),
      "a rule makes MaximumConcurrency equal a set ReservedConcurrency")
statements = j(R["TriggerQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"])
check("s3:::*" not in statements and "ArnLike" not in statements,
      "the queue policy names the source bucket's exact ARN (no s3:::* and no ArnLike)")
check(j(R["ExportBucket"]["Properties"]["BucketName"]).count("AWS::NoValue") == 0,
      "the stack names the bucket it creates (the queue policy repeats the name)")
alarm = R["DeadLetterQueueAlarm"]["Properties"]
check(alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
      and alarm["TreatMissingData"] in ("ignore", "breaching"),
      "the DLQ alarm counts waiting messages and does not fall back to OK on missing data")
check(j(fn["Architectures"]) == j([{"Ref": "Architecture"}]) and P["Architecture"]["Default"] == "arm64"
      and sorted(P["Architecture"]["AllowedValues"]) == ["arm64", "x86_64"],
      "the function's architecture is the Architecture parameter: arm64 by default, x86_64 allowed")
out = fn["Environment"]["Variables"]["OUTPUT_BUCKET"]["Fn::If"]
check(out[0] == "OutputToSource" and j(out[2]["Fn::If"][1:]) == j([{"Ref": "OutputBucketName"}, {"Ref": "OutputBucket"}])
      and P["OutputToSourceBucket"]["Default"] == "false" and P["OutputBucketName"]["Default"] == "",
      "by default OUTPUT_BUCKET is a bucket of its own, created by the stack")
batch = R["BatchOperationsRole"]["Properties"]
trust = batch["AssumeRolePolicyDocument"]["Statement"]
check(len(trust) == 1 and j(trust[0]["Principal"]) == j({"Service": "batchoperations.s3.amazonaws.com"}),
      "only S3 Batch Operations assumes the backfill role")
stmts = [st for pol in batch["Policies"] if "PolicyDocument" in pol for st in pol["PolicyDocument"]["Statement"]]
invoke = [st for st in stmts if "lambda:" in j(st["Action"])]
check(len(invoke) == 1 and j(invoke[0]["Action"]) == j("lambda:InvokeFunction")
      and all("Function" in j(r) for r in invoke[0]["Resource"]),
      "the backfill role invokes this function only")
check(all("backfill/*" in j(st["Resource"]) for st in stmts if "s3:" in j(st["Action"])),
      "the backfill role reaches S3 under <OUTPUT_PREFIX>backfill/ only")
check(any(j(o.get("Value")) == j({"Fn::GetAtt": ["BatchOperationsRole", "Arn"]}) for o in t["Outputs"].values()),
      "the backfill role's ARN is an output")
import re
body = R["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][0]
try:
    json.loads(re.sub(r"\$\{[^}]+\}", "1", body))
except ValueError as e:
    bad.append(f"the dashboard body is not JSON once substituted: {e}")
for what in bad:
    print(f"template guarantee broken: {what}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
echo "lint-template: template.yaml keeps its delivery guarantees." >&2
# Offline: --skip-download keeps checkov from fetching guideline links from its vendor's API.
report=$("$checkov" -f template.yaml --framework cloudformation --skip-download --compact) || rc=$?
if [ "$rc" -ne 0 ]; then
  printf '%s\n' "$report" >&2
  echo "lint-template: checkov failed checks in template.yaml (see above)." >&2
  exit 1
fi
summary=$(printf '%s\n' "$report" | grep -m1 '^Passed checks:' || true)
echo "lint-template: checkov $("$checkov" --version) passes template.yaml (${summary:-no summary})." >&2
