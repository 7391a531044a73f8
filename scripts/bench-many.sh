#!/usr/bin/env bash
# Many small objects (issue 13; BENCHMARKS.md, "Many small objects"): objects/s, S3 requests per
# object, peak RSS and the Lambda cost per 100,000 objects.
#
#   scripts/bench-many.sh                 # 1,000 big + 10,000 small objects, 0 and 20 ms
#   MANY=1 scripts/bench.sh               # the same, after scripts/bench.sh's rows
#   MANY_BIG=100 MANY_SMALL=1000 BUILD=0 scripts/bench-many.sh   # a quick trial, no cargo build
#
# Inputs (scripts/many_objects.py, uploaded with boto3 from .venv to the plain-file S3 server of
# tools/s3-server): MANY_BIG API user exports of ~5 MB of JSON lines (5,600 users, ~0.5 MB gzip,
# the same content under every key) and MANY_SMALL archived messages of ~2 KB gzip. They are
# processed as S3 Batch Operations invocations (schema 2.0, 100 tasks per event file, one
# `export-fetcher invoke` per file, in sequence) against the server directly (0 ms) and through
# scripts/latency_proxy.py (LATENCY_MS, default 20 ms per request; MANY_LATENCY_BIG / _SMALL
# objects, default all big and 2,000 small), and, when the binary has it, through
# `export-fetcher backfill s3://bench/PREFIX --local --concurrency MANY_CONCURRENCY`.
# Reference rows: the same objects read by boto3 (GET + gunzip, 4 threads: the handler's tasks at a
# time), the least any S3 reader does. S3 requests are counted by the latency proxy (every
# request it forwards, by method), so only the rows through it have their own count; a 0 ms row
# shows the count of its 20 ms twin (same objects, same code).
set -euo pipefail
cd "$(dirname "$0")/.."
BIG=${MANY_BIG:-1000}
SMALL=${MANY_SMALL:-10000}
LAT_BIG=${MANY_LATENCY_BIG:-$BIG}
LAT_SMALL=${MANY_LATENCY_SMALL:-$((SMALL < 2000 ? SMALL : 2000))}
LATENCY_MS=${LATENCY_MS:-20}
CONCURRENCY=${MANY_CONCURRENCY:-16}
WORK=${BENCH_MANY_WORK:-target/bench-many}
BIN=${BENCH_BIN:-target/release}
B=$BIN/export-fetcher
S=$BIN/examples/s3-server
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
# The function's memory (template.yaml, FunctionMemorySize's default), for the GB-seconds.
MEMORY_MB=$(awk '/^  FunctionMemorySize:/{f=1} f && /Default:/{print $2; exit}' template.yaml)

if [ "${BUILD:-1}" = 1 ]; then
  cargo build --release --locked --quiet --bin export-fetcher --example s3-server
fi
for n in "$BIG" "$SMALL" "$LAT_BIG" "$LAT_SMALL"; do
  [ $((n % 100)) = 0 ] || { echo "bench-many: object counts must be multiples of 100 (tasks per event)" >&2; exit 2; }
done
rm -rf "$WORK"; mkdir -p "$WORK/plain" "$WORK/runs"
results="$WORK/results.txt"; : > "$results"

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
"$S" --root "$WORK/plain" --plain > "$WORK/plain.out" 2>"$WORK/plain.err" &
pids+=($!); server_pid=$!
for _ in $(seq 600); do grep -q '^ready ' "$WORK/plain.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready ' "$WORK/plain.out" || { echo "bench-many: the S3 server did not start" >&2; cat "$WORK/plain.err" >&2; exit 1; }
plain_url=$(awk '/^ready /{print $2}' "$WORK/plain.out")
python3 scripts/latency_proxy.py "${plain_url##*:}" "$LATENCY_MS" > "$WORK/proxy.out" 2>"$WORK/proxy.err" &
pids+=($!); proxy_pid=$!
for _ in $(seq 100); do [ -s "$WORK/proxy.out" ] && break; sleep 0.1; done
proxy_url=$(head -1 "$WORK/proxy.out")
[ -n "$proxy_url" ] || { echo "bench-many: the latency proxy did not start" >&2; cat "$WORK/proxy.err" >&2; exit 1; }

start=$(date +%s)
"$PY" scripts/many_objects.py upload "$plain_url" "$WORK" "$BIG" "$SMALL" | tee "$WORK/inputs.txt"
echo "bench-many: uploaded in $(( $(date +%s) - start )) s" >&2
sync
# The server names its files by a counter: everything after the last input is an output, removed
# after each row (5 GB of parts per big row) while the server keeps serving the inputs.
last_input=$(ls "$WORK/plain" | sort | tail -1)
drop_outputs() { ls "$WORK/plain" | awk -v l="$last_input" '$0 > l' | sed "s|^|$WORK/plain/|" | xargs -r rm -f; }

tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# proxy_counts: the proxy's request counts so far, as one JSON line.
proxy_counts() {
  local lines; lines=$(wc -l < "$WORK/proxy.out")
  kill -USR1 "$proxy_pid"
  for _ in $(seq 100); do [ "$(wc -l < "$WORK/proxy.out")" -gt "$lines" ] && break; sleep 0.05; done
  tail -1 "$WORK/proxy.out"
}

# row LABEL ENDPOINT N CMD...: runs CMD (each of its runs in $WORK/runs/LABEL.cmds, one per line)
# under /usr/bin/time; appends to $results one JSON line: label, objects, wall, CPU, the largest
# peak RSS of its runs, the S3 server's CPU, and the request counts when ENDPOINT is the proxy.
row() {
  local label=$1 endpoint=$2 n=$3 before_counts='{}' after_counts='{}' t0 t1 s0 s1
  local dir="$WORK/runs/$label"; mkdir -p "$dir"; : > "$dir/time"
  [ "$endpoint" = "$proxy_url" ] && before_counts=$(proxy_counts)
  s0=$(cpu_ticks "$server_pid"); t0=$(date +%s.%N)
  local i=0
  while IFS= read -r cmd; do
    i=$((i + 1))
    if ! AWS_ENDPOINT_URL=$endpoint /usr/bin/time -f "%e %U %S %M" -a -o "$dir/time" \
        bash -c "$cmd" > "$dir/out-$i.json" 2>"$dir/err-$i"; then
      echo "bench-many: $label failed on: $cmd" >&2; tail -5 "$dir/err-$i" >&2; exit 1
    fi
  done < "$dir/cmds"
  t1=$(date +%s.%N); s1=$(cpu_ticks "$server_pid")
  [ "$endpoint" = "$proxy_url" ] && after_counts=$(proxy_counts)
  python3 - "$label" "$n" "$t0" "$t1" "$(( s1 - s0 ))" "$tck" "$before_counts" "$after_counts" "$dir/time" >> "$results" <<'PY'
import json, sys
label, n, t0, t1, ticks, tck, before, after, times = sys.argv[1:]
runs = [l.split() for l in open(times) if l.strip() and not l.startswith("Command")]
before, after = json.loads(before), json.loads(after)
print(json.dumps({
    "label": label, "objects": int(n), "wall": float(t1) - float(t0),
    "cpu": sum(float(u) + float(s) for _, u, s, _ in runs),
    "rss_kb": max(int(m) for *_, m in runs), "runs": len(runs),
    "server_cpu": int(ticks) / int(tck),
    "requests": {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)},
}))
PY
  drop_outputs
}

# check_tasks LABEL N: every task of every invocation Succeeded with a manifest under the row's
# prefix (a fresh prefix per row: nothing is a duplicate).
check_tasks() {
  local ok
  ok=$(cat "$WORK/runs/$1"/out-*.json | jq -r '.results[] | "\(.resultCode) \(.resultString)"' \
    | awk -v p="$1/" '$1 == "Succeeded" && index($2, p) == 1' | wc -l)
  [ "$ok" = "$2" ] || { echo "bench-many: $1: $ok of $2 tasks succeeded with a new manifest" >&2; exit 1; }
}

# invoke_row LABEL ENDPOINT KIND N: the first N objects of KIND as Batch Operations events.
invoke_row() {
  local label=$1 endpoint=$2 kind=$3 n=$4
  mkdir -p "$WORK/runs/$label"
  ls "$WORK"/events/"$kind"-*.json | sort | head -n $((n / 100)) \
    | sed "s|^|OUTPUT_PREFIX=$label/ AWS_LAMBDA_FUNCTION_MEMORY_SIZE=$MEMORY_MB $B invoke |" > "$WORK/runs/$label/cmds"
  row "$label" "$endpoint" "$n"
  check_tasks "$label" "$n"
}

# reference_row LABEL ENDPOINT KIND N: boto3 GET + gunzip of the first N objects of KIND.
reference_row() {
  local label=$1 endpoint=$2 kind=$3 n=$4
  mkdir -p "$WORK/runs/$label"
  head -n "$n" "$WORK/$kind.keys" > "$WORK/runs/$label/keys"
  echo "$PY scripts/many_objects.py read $endpoint $WORK/runs/$label/keys 4" > "$WORK/runs/$label/cmds"
  row "$label" "$endpoint" "$n"
  grep -q "^$n objects" "$WORK/runs/$label/out-1.json" || { echo "bench-many: $label read too few objects" >&2; exit 1; }
}

# backfill_row LABEL ENDPOINT KIND N: `backfill s3://bench/PREFIX --local` over the N objects of KIND.
has_backfill=no
"$B" backfill --help 2>/dev/null | grep -q -- '--local' && has_backfill=yes
backfill_row() {
  local label=$1 endpoint=$2 kind=$3 n=$4 prefix
  prefix=$(head -1 "$WORK/$kind.keys" | cut -d/ -f1)
  mkdir -p "$WORK/runs/$label"
  echo "OUTPUT_PREFIX=$label/ $B backfill s3://bench/$prefix/ --local --concurrency $CONCURRENCY" > "$WORK/runs/$label/cmds"
  row "$label" "$endpoint" "$n"
  # Its summary table (stdout): all N objects done with a complete manifest, none failed.
  local out="$WORK/runs/$label/out-1.json"
  awk -v n="$n" '$1 == "done" && $2 == n {d = 1} $1 == "complete" && $2 == n {c = 1} /^failed:/ {f = 1}
    END {exit !(d && c && !f)}' "$out" \
    || { echo "bench-many: $label: not all $n objects done with a complete manifest" >&2; cat "$out" >&2; exit 1; }
  echo "bench-many: $label: $(grep 'objects/s' "$out")" >&2
}

for kind in big small; do
  all=$BIG; lat=$LAT_BIG
  [ "$kind" = small ] && { all=$SMALL; lat=$LAT_SMALL; }
  [ "$all" -gt 0 ] || continue
  invoke_row "invoke-$kind-0ms" "$plain_url" "$kind" "$all"
  reference_row "boto3-$kind-0ms" "$plain_url" "$kind" "$all"
  if [ "$lat" -gt 0 ]; then
    invoke_row "invoke-$kind-${LATENCY_MS}ms" "$proxy_url" "$kind" "$lat"
    reference_row "boto3-$kind-${LATENCY_MS}ms" "$proxy_url" "$kind" "$lat"
  fi
  if [ "$has_backfill" = yes ]; then
    backfill_row "backfill-$kind-0ms" "$plain_url" "$kind" "$all"
    backfill_row "backfill-$kind-${LATENCY_MS}ms" "$proxy_url" "$kind" "$all"
  fi
done
[ "$has_backfill" = yes ] || echo "bench-many: this export-fetcher has no \`backfill --local\`: no backfill rows" >&2

python3 - "$results" "$MEMORY_MB" "$LATENCY_MS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
memory_gb, latency = int(sys.argv[2]) / 1024, sys.argv[3]
GB_S, PUT, GET = 0.0000166667, 0.005 / 1000, 0.0004 / 1000
PUT_CLASS, GET_CLASS = ("PUT", "POST", "LIST"), ("GET", "HEAD")
by_label = {r["label"]: r for r in rows}
print("| row | objects | wall (s) | objects/s | CPU ms/object | S3 requests/object | peak RSS (MiB) "
      "| server CPU (s) | GB-s per 100k | $ per 100k |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    req, twin = r["requests"], ""
    if not req:
        other = by_label.get(r["label"].replace("-0ms", f"-{latency}ms"))
        if other and other["requests"]:
            req, twin, r_n = other["requests"], "†", other["objects"]
    else:
        r_n = r["objects"]
    n = r["objects"]
    gb_s = r["wall"] / n * 100_000 * memory_gb
    cost = gb_s * GB_S
    if req:
        put = sum(req.get(k, 0) for k in PUT_CLASS) / r_n
        get = sum(req.get(k, 0) for k in GET_CLASS) / r_n
        cost += (put * PUT + get * GET) * 100_000
        detail = ", ".join(f"{k} {v / r_n:.2f}" for k, v in sorted(req.items()))
        reqs = f"{put + get:.2f}{twin} ({detail})"
    else:
        reqs = "not counted"
    print(f"| {r['label']} | {n} | {r['wall']:.1f} | {n / r['wall']:.0f} | {r['cpu'] / n * 1000:.1f} "
          f"| {reqs} | {r['rss_kb'] / 1024:.1f} | {r['server_cpu']:.1f} | {gb_s:.0f} | {cost:.2f} |")
print(f"\nGB-s per 100k = wall / objects × 100,000 × {int(sys.argv[2])} MB / 1024; "
      f"$ per 100k = GB-s × $0.0000166667 + 100,000 × (PUT-class requests/object × $0.005/1000 "
      f"+ GET-class requests/object × $0.0004/1000); PUT-class: PUT, POST, LIST; GET-class: GET, HEAD. "
      f"† counted in the {latency} ms row of the same objects.")
PY
