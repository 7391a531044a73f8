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
# The template's delivery guarantees, which neither tool knows about (docs/DEPLOY.md explains each;
# the roll-ups' ones are explained next to their resources in template.yaml).
.venv/bin/python - template.yaml <<'PY' || { echo "lint-template: template.yaml breaks a delivery guarantee (see above)." >&2; exit 1; }
import json, re, sys
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
# The roll-ups (src/rollup/): Braze's callback through a public Function URL, the 5-minute sweep
# (API exports and Currents partitions), the token from Secrets Manager, listings limited by
# s3:prefix, deletes of open records only, the alarm, the dashboard.
check(j(fn.get("FunctionUrlConfig", {}).get("AuthType")) == j("NONE"),
      "the Function URL (Braze's export callback) exists with AuthType NONE: Braze cannot sign requests")
schedules = [e["Properties"] for e in fn["Events"].values() if e["Type"] in ("Schedule", "ScheduleV2")]
check(len(schedules) == 1
      and (schedules[0].get("Schedule") or schedules[0].get("ScheduleExpression")) == "rate(5 minutes)",
      "one schedule invokes the sweep, rate(5 minutes)")
env = fn["Environment"]["Variables"]
token = env.get("CALLBACK_TOKEN")
secret = re.fullmatch(r"\{\{resolve:secretsmanager:\$\{(\w+)\}:SecretString\}\}",
                      token["Fn::Sub"] if isinstance(token, dict) and isinstance(token.get("Fn::Sub"), str) else "")
generated = R[secret[1]]["Properties"].get("GenerateSecretString", {}) if secret and secret[1] in R else {}
check(secret is not None and R.get(secret[1], {}).get("Type") == "AWS::SecretsManager::Secret"
      and int(generated.get("PasswordLength", 0)) >= 16 and generated.get("ExcludePunctuation") is True,
      "CALLBACK_TOKEN is a Secrets Manager dynamic reference to a secret the stack generates "
      "(at least 16 letters and digits), never a literal")
check(not any("{{resolve:" in j(o) or "CallbackTokenSecret.SecretString" in j(o) for o in t["Outputs"].values()),
      "no output reveals the callback token")
check(j(env.get("SOURCE_BUCKET")) == j(out[1]) and j(env.get("EXPORT_QUIET_MINUTES")) == j({"Ref": "ExportQuietMinutes"}),
      "SOURCE_BUCKET is the bucket Braze writes to and EXPORT_QUIET_MINUTES the ExportQuietMinutes parameter")
grace = P.get("CurrentsGraceMinutes", {})
check(j(env.get("CURRENTS_GRACE_MINUTES")) == j({"Ref": "CurrentsGraceMinutes"})
      and grace.get("Type") == "Number" and int(grace.get("Default", -1)) == 60
      and int(grace.get("MinValue", -1)) == 0 and int(grace.get("MaxValue", -1)) == 10080,
      "CURRENTS_GRACE_MINUTES is the CurrentsGraceMinutes parameter: default 60, 0 to 10080 (what src/config.rs accepts)")
groups = t["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
check(any({"ExportQuietMinutes", "CurrentsGraceMinutes"} <= set(g["Parameters"]) for g in groups),
      "CurrentsGraceMinutes is in ExportQuietMinutes' parameter group")
def statements(node):
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            yield node
        else:
            for v in node.values():
                yield from statements(v)
    elif isinstance(node, list):
        for v in node:
            yield from statements(v)
def actions(st):
    return [st["Action"]] if isinstance(st["Action"], str) else list(st["Action"])
role = list(statements(R["FunctionRole"]["Properties"]["Policies"]))
listing = [st for st in role if "s3:ListBucket" in actions(st)]
# NotFoundIsDetectable is the one exception: S3 answers 404 (not 403) for a missing key only to
# a caller allowed to list the bucket, which a prefix-conditioned grant does not satisfy
# (docs/DEPLOY.md, "Permissions"). Every other ListBucket names the prefixes it lists.
check(all(st.get("Sid") == "NotFoundIsDetectable" or "s3:prefix" in j(st.get("Condition")) for st in listing),
      "every s3:ListBucket of the function role but NotFoundIsDetectable carries an s3:prefix condition")
source_lists = [st for st in listing if st.get("Sid") != "NotFoundIsDetectable" and "CreateSourceBucket" in j(st["Resource"])
                and "OutputToSource" not in j(st["Resource"])]
check(len(source_lists) == 1
      and j(source_lists[0].get("Condition")) == j({"StringLike": {"s3:prefix": ["segment-export/*"]}}),
      "the export roll-ups' own listing of the source bucket is limited to segment-export/")
# A Currents partition's close lists its prefix in the source bucket, under whatever folder the
# Current was set up with: no s3:prefix can name it, so NotFoundIsDetectable grants it.
found = [st for st in listing if st.get("Sid") == "NotFoundIsDetectable"]
check(len(found) == 1 and "Condition" not in found[0]
      and any("CreateSourceBucket" in j(r) and "OutputToSource" not in j(r) for r in found[0]["Resource"]),
      "NotFoundIsDetectable lets the role list the source bucket whole (partition closes list Currents prefixes through it)")
open_records = {"StringLike": {"s3:prefix": [{"Fn::Sub": "${OutputPrefix}open/exports/*"},
                                             {"Fn::Sub": "${OutputPrefix}open/partitions/*"}]}}
check(any(j(st.get("Condition")) == j(open_records) for st in listing),
      "the roll-ups list the output bucket under <OutputPrefix>open/exports/ and open/partitions/ only")
deletes = [st for st in role if any(a.startswith("s3:Delete") for a in actions(st))]
def object_path(resource):
    # {"Fn::Sub": ["arn:${AWS::Partition}:s3:::${Bucket}/<path>", {...}]} -> "<path>"
    sub = resource.get("Fn::Sub") if isinstance(resource, dict) else None
    text = sub[0] if isinstance(sub, list) else sub
    if not isinstance(text, str):
        return j(resource)
    return re.sub(r"^arn:\$\{AWS::Partition\}:s3:::\$\{Bucket\}/", "", text)
deleted = deletes[0]["Resource"] if len(deletes) == 1 else []
deleted = deleted if isinstance(deleted, list) else [deleted]
check(len(deletes) == 1 and actions(deletes[0]) == ["s3:DeleteObject"]
      and sorted(map(object_path, deleted)) == ["${OutputPrefix}open/exports/*", "${OutputPrefix}open/partitions/*"]
      and all("OutputToSource" in j(r) for r in deleted),
      "the function deletes nothing but the open records under <OutputPrefix>open/exports/ and open/partitions/")
open_alarms = [r["Properties"] for r in R.values() if r["Type"] == "AWS::CloudWatch::Alarm"
               and r["Properties"].get("MetricName") == "OldestOpenExportAge"]
check(len(open_alarms) == 1 and open_alarms[0]["Namespace"] == "ExportFetcher"
      and int(open_alarms[0]["Threshold"]) == 86400 and open_alarms[0]["Statistic"] == "Maximum"
      and open_alarms[0]["ComparisonOperator"] == "GreaterThanThreshold",
      "an alarm fires when an export has been open for more than 86400 s (OldestOpenExportAge)")
check(R["NoInvocationsAlarm"]["Properties"]["MetricName"] != "Invocations",
      "the no-data alarm does not count invocations (the schedule invokes the function every 5 minutes)")
body = R["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][0]
try:
    json.loads(re.sub(r"\$\{[^}]+\}", "1", body))
except ValueError as e:
    bad.append(f"the dashboard body is not JSON once substituted: {e}")
for metric in ("OpenExports", "ExportsClosed", "OpenPartitions", "PartitionsClosed"):
    check(metric in body, f"the dashboard shows {metric}")
# Glue (src/rollup/glue.rs): off unless GlueDatabaseName names a database; then the four calls
# the function makes, on the catalog, that database and its tables, and nothing else.
glue_db = P.get("GlueDatabaseName", {})
pattern = glue_db.get("AllowedPattern", "")
check(glue_db.get("Type") == "String" and glue_db.get("Default") == ""
      and all(re.fullmatch(pattern, ok) for ok in ("", "braze_currents"))
      and not any(re.fullmatch(pattern, no) for no in ("*", "braze_*", "a?", "a/b", "a:b", "Braze")),
      "GlueDatabaseName defaults to empty, and its pattern admits no IAM wildcard (* ?), / or :")
check(any("GlueDatabaseName" in g["Parameters"] and "CurrentsGraceMinutes" in g["Parameters"] for g in groups),
      "GlueDatabaseName is in the roll-ups' parameter group")
has_glue = {"Fn::Not": [{"Fn::Equals": [{"Ref": "GlueDatabaseName"}, ""]}]}
check(j(t["Conditions"].get("HasGlueDatabase")) == j(has_glue),
      "the condition HasGlueDatabase is: GlueDatabaseName is not empty")
check(j(env.get("GLUE_DATABASE")) == j({"Fn::If": ["HasGlueDatabase", {"Ref": "GlueDatabaseName"}, {"Ref": "AWS::NoValue"}]}),
      "GLUE_DATABASE is GlueDatabaseName when given, unset (AWS::NoValue) otherwise")
everywhere = [st for res in R.values() for st in statements(res.get("Properties", {}))]
glue_statements = [st for st in everywhere if any(a.lower().startswith("glue:") for a in actions(st))]
check(not any(a == "*" or (a.lower().startswith("glue:") and ("*" in a or "?" in a))
              for st in everywhere for a in actions(st))
      and "NotAction" not in j(R["FunctionRole"]),
      "no statement grants glue:* (or any glue action by wildcard), '*' or NotAction")
glue_policies = [pol for pol in R["FunctionRole"]["Properties"]["Policies"] if "glue:" in j(pol)]
check(len(glue_policies) == 1 and list(glue_policies[0]) == ["Fn::If"]
      and glue_policies[0]["Fn::If"][0] == "HasGlueDatabase"
      and j(glue_policies[0]["Fn::If"][2]) == j({"Ref": "AWS::NoValue"}),
      "the function role's Glue policy exists only under the condition HasGlueDatabase")
GLUE_ACTIONS = ["glue:BatchCreatePartition", "glue:CreateTable", "glue:GetTable", "glue:UpdateTable"]
GLUE_ARN = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:"
def subs(resource):
    return [r.get("Fn::Sub") if isinstance(r, dict) else r
            for r in (resource if isinstance(resource, list) else [resource])]
check(len(glue_statements) == 1 and glue_statements[0].get("Effect") == "Allow"
      and sorted(actions(glue_statements[0])) == GLUE_ACTIONS and "Condition" not in glue_statements[0],
      "one statement grants Glue, and only glue:GetTable, glue:CreateTable, glue:UpdateTable, glue:BatchCreatePartition")
check(len(glue_statements) == 1 and sorted(map(str, subs(glue_statements[0].get("Resource")))) == sorted([
          GLUE_ARN + "catalog",
          GLUE_ARN + "database/${GlueDatabaseName}",
          GLUE_ARN + "table/${GlueDatabaseName}/*"]),
      "the Glue statement names this account's catalog, the GlueDatabaseName database and its tables, nothing else")
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
