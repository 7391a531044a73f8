#!/usr/bin/env bash
# Side-by-side benchmark of the whole pipeline (see BENCHMARKS.md).
#
#   scripts/bench.sh            # 100 MB and 1 GiB inputs, RUNS=3 alternating runs each
#   SIZES=100m RUNS=5 scripts/bench.sh
#
# Generates its own inputs (scripts/gen_bench_data.py: Braze user-export JSON lines as one gzip
# object and as an 8-member zip; a Currents Avro file in the deflate and the snappy codec; a
# dashboard CSV export zip), then alternates, on the same machine:
#   export-fetcher index FILE --out DIR     vs  gzip -dc, pigz -dc, igzip -dc (gzip) / unzip -p (zip)
#   export-fetcher index FILE (no --out)    on one pinned core (`taskset -c 0`, the `1` rows), vs
#                                           the same references on that core
#   export-fetcher invoke (S3 path)         against local S3 servers (tools/s3-server, an example);
#                                           in the one-core rows the server is moved to the other core
#   Avro / CSV                              vs fastavro reading every record / Python's csv module
#                                           reading every row (what a Python forwarder does)
# and reports the median wall time, throughput of decompressed bytes, CPU time and peak RSS
# (/usr/bin/time), the CPU the S3 server used during each S3 row, plus the cold start and the
# stripped binary size. Lambda below 1,769 MB has one vCPU: the one-core rows are its bill.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SIZES=${SIZES:-"100m 1g"}
DATA=${BENCH_DATA:-target/bench-data}
WORK=${BENCH_WORK:-target/bench-work}
B=target/release/export-fetcher
S=target/release/examples/s3-server

# The references: pigz, and igzip (ISA-L's gzip, the fastest inflate there is) from Debian.
for tool in pigz:pigz igzip:isal; do
  if ! command -v "${tool%%:*}" >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq "${tool##*:}" >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq "${tool##*:}" >/dev/null) || true
  fi
done
# fastavro (and cramjam, its snappy codec) in a venv of the benchmark's own.
PY=.venv/bench/bin/python
if [ ! -x "$PY" ]; then python3 -m venv .venv/bench; fi
.venv/bench/bin/pip install --quiet --disable-pip-version-check 'fastavro==1.*' 'cramjam==2.*'
cargo build --release --locked --quiet --bins --example s3-server
"$PY" scripts/gen_bench_data.py "$DATA" --more >/dev/null
rm -rf "$WORK"; mkdir -p "$WORK"
results="$WORK/results.txt"; : > "$results"

# measure LABEL BYTES CMD...: appends "label cores base bytes wall user sys maxrss_kb
# server_cpu_s" to $results; server_cpu_s is the CPU the S3 server process $server_pid used
# meanwhile ("-" when none is set). $CORES (1 or 2, default 2) is what the row had: with 1 the
# command runs under `taskset -c 0`. $BASE names the rows (comma-separated) it is compared with.
server_pid=
tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
measure() {
  local label=$1 bytes=$2; shift 2
  local before=0 server=-
  [ -n "$server_pid" ] && before=$(cpu_ticks "$server_pid")
  local cores=${CORES:-2} pin=()
  [ "$cores" = 1 ] && pin=(taskset -c 0)
  if ! /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "${pin[@]}" "$@" >"$WORK/stdout" 2>"$WORK/stderr"; then
    echo "bench: $label failed:" >&2; tail -5 "$WORK/stderr" >&2; exit 1
  fi
  [ -n "$server_pid" ] && server=$(awk -v a="$before" -v b="$(cpu_ticks "$server_pid")" -v t="$tck" 'BEGIN{printf "%.2f", (b - a) / t}')
  echo "$label $cores ${BASE:--} $bytes $(cat "$WORK/time") $server" >> "$results"
}
# servers_on CPUS: moves every thread of the S3 servers to CPUS (`1` for the one-core rows).
servers_on() { for pid in "$plain_pid" "$s3fs_pid"; do taskset -a -p -c "$1" "$pid" >/dev/null; done; }

# The S3 path: local S3 servers in their own processes, the objects uploaded through the S3 API,
# then `export-fetcher invoke` on their notifications. The servers share these two cores with
# the fetcher (real S3 spends none of the function's CPU), so the rows that count use the lean
# plain-file backend (`s3-server --plain`, tools/s3-server/plain.rs: one disk write per byte
# received, the same disk work as `index --out`); one reference row per size uses s3s-fs, which
# hashes every uploaded byte with MD5 twice and copies every part once more, and is bound by that.
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
puts=()
for size in $SIZES; do
  puts+=(--put "bench/exports/users-$size.jsonl.gz=$DATA/users-$size.jsonl.gz")
  puts+=(--put "bench/exports/users-$size.zip=$DATA/users-$size.zip")
done
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
# start_server NAME [FLAGS...]: prints the endpoint; its pid goes into pids[] and $NAME_pid.
start_server() {
  local name=$1; shift
  rm -rf "$WORK/$name"; mkdir -p "$WORK/$name"
  "$S" --root "$WORK/$name" "${puts[@]}" "$@" > "$WORK/$name.out" 2>"$WORK/$name.err" &
  pids+=($!); printf -v "${name}_pid" %s "$!"
  for _ in $(seq 600); do grep -q '^ready ' "$WORK/$name.out" 2>/dev/null && break; sleep 0.1; done
  grep -q '^ready ' "$WORK/$name.out" || { echo "bench: the $name S3 server did not start" >&2; cat "$WORK/$name.err" >&2; exit 1; }
}
start_server plain --plain
start_server s3fs
plain_url=$(awk '/^ready /{print $2}' "$WORK/plain.out")
s3fs_url=$(awk '/^ready /{print $2}' "$WORK/s3fs.out")
# Per-request latency as from a function to a remote S3: every request to the plain-file server
# held for LATENCY_MS (scripts/latency_proxy.py), for the `s3-<N>ms-*` rows (100 MB inputs).
LATENCY_MS=${LATENCY_MS:-20}
python3 scripts/latency_proxy.py "${plain_url##*:}" "$LATENCY_MS" > "$WORK/proxy.out" 2>"$WORK/proxy.err" &
pids+=($!)
for _ in $(seq 100); do [ -s "$WORK/proxy.out" ] && break; sleep 0.1; done
proxy_url=$(head -1 "$WORK/proxy.out")
[ -n "$proxy_url" ] || { echo "bench: the latency proxy did not start" >&2; cat "$WORK/proxy.err" >&2; exit 1; }
# The servers have just written every input to their folders: let the kernel write those pages
# back now rather than during the first rows.
sync

# invoke_row LABEL OUTPUT_PREFIX [VAR=VALUE...]: `invoke` on $WORK/event.json, measured; the
# object must come out done. A fresh output prefix each run: an earlier manifest would make it a
# duplicate.
invoke_row() {
  local label=$1 prefix=$2; shift 2
  measure "$label" "$bytes" env OUTPUT_PREFIX="$prefix" "$@" "$B" invoke "$WORK/event.json"
  grep -q '"outcome": "done"' "$WORK/stdout" || { echo "bench: invoke did not finish the object:" >&2; cat "$WORK/stdout" >&2; exit 1; }
}

event() { # event KEY: a direct S3 notification
  printf '{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"bench"},"object":{"key":"%s"}}}]}' "$1" > "$WORK/event.json"
}

for size in $SIZES; do
  gz="$DATA/users-$size.jsonl.gz"; zip="$DATA/users-$size.zip"
  bytes=$(stat -c %s "$DATA/users-$size.jsonl")
  for run in $(seq "$RUNS"); do
    rm -rf "$WORK/out"; BASE=gzip-dc-$size,pigz-dc-$size measure "index-gzip-$size" "$bytes" "$B" index "$gz" --out "$WORK/out"
    measure "gzip-dc-$size" "$bytes" sh -c "gzip -dc '$gz' > /dev/null"
    if command -v pigz >/dev/null; then measure "pigz-dc-$size" "$bytes" sh -c "pigz -dc '$gz' > /dev/null"; fi
    rm -rf "$WORK/out"; BASE=unzip-p-$size measure "index-zip-$size" "$bytes" "$B" index "$zip" --out "$WORK/out"
    measure "unzip-p-$size" "$bytes" sh -c "unzip -p '$zip' > /dev/null"
    # One core: all the work (inflate, SHA-256, JSON validation, columns, offsets), no --out.
    CORES=1 BASE=pigz-dc-$size,igzip-dc-$size measure "index-gzip-$size" "$bytes" "$B" index "$gz"
    if command -v pigz >/dev/null; then CORES=1 measure "pigz-dc-$size" "$bytes" sh -c "pigz -dc '$gz' > /dev/null"; fi
    if command -v igzip >/dev/null; then CORES=1 measure "igzip-dc-$size" "$bytes" sh -c "igzip -dc '$gz' > /dev/null"; fi
    CORES=1 BASE=unzip-p-$size measure "index-zip-$size" "$bytes" "$B" index "$zip"
    CORES=1 measure "unzip-p-$size" "$bytes" sh -c "unzip -p '$zip' > /dev/null"
    export AWS_ENDPOINT_URL=$plain_url; server_pid=$plain_pid
    for kind in jsonl.gz zip; do
      event "exports/users-$size.$kind"
      index_row=index-$( [ "$kind" = zip ] && echo zip || echo gzip )-$size
      BASE=$index_row invoke_row "s3-invoke-${kind%%.*}-$size" "run-$run-$kind/"
      # One core for the function, the server on the other (real S3 spends none of its CPU).
      servers_on 1
      CORES=1 BASE=$index_row invoke_row "s3-invoke-${kind%%.*}-$size" "one-$run-$kind/"
      servers_on 0-1
    done
    # The read side alone: ranged GETs, decoding, indexing, the manifest; no parts uploaded.
    event "exports/users-$size.jsonl.gz"
    BASE=index-gzip-$size invoke_row "s3-readonly-jsonl-$size" "noparts-$run/" WRITE_PARTS=false
    if [ "$size" = 100m ]; then
      export AWS_ENDPOINT_URL=$proxy_url
      for kind in jsonl.gz zip; do
        event "exports/users-$size.$kind"
        BASE=index-$( [ "$kind" = zip ] && echo zip || echo gzip )-$size invoke_row "s3-${LATENCY_MS}ms-${kind%%.*}-$size" "latency-$run-$kind/"
      done
    fi
    # Reference: the same as s3-invoke-jsonl against s3s-fs.
    event "exports/users-$size.jsonl.gz"
    export AWS_ENDPOINT_URL=$s3fs_url; server_pid=$s3fs_pid
    BASE=index-gzip-$size invoke_row "s3fs-invoke-jsonl-$size" "run-$run-jsonl/"
    server_pid=
    # s3s-fs keeps what this run wrote as files under its keys: not kept (the plain-file server
    # keeps its blobs until the end; the whole run needs ~20 GB free at SIZES="100m 1g").
    rm -rf "$WORK"/s3fs/bench/{run,one,noparts,latency}-*
  done
  rm -rf "$WORK/out"
done

# Currents Avro (deflate, snappy) and a dashboard CSV export: the product against what a Python
# forwarder does with the same file (fastavro decoding every record; csv reading every row of
# every member), on one core and on two. Bytes: the records' encoded size (Avro) and the
# decompressed CSV (the throughput column).
currents=currents/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5/event_type=users.messages.email.Send/date=2025-04-01-17/version=6/us-01/dataexport.prod-01.S3.integration.69cadaaed2d51b7c75b1a3e5+0+123456.avro
csvzip="$DATA/users-csv.zip"
csv_bytes=$(unzip -l "$csvzip" | awk 'END{print $1}')
for run in $(seq "$RUNS"); do
  for codec in deflate snappy; do
    avro="$DATA/email-send-$codec.avro"; bytes=$(stat -c %s "$avro")
    for cores in 2 1; do
      CORES=$cores BASE=fastavro-$codec measure "index-avro-$codec" "$bytes" "$B" index "$avro" --key "$currents"
    done
    CORES=1 measure "fastavro-$codec" "$bytes" "$PY" -c 'import fastavro, sys; print(sum(1 for _ in fastavro.reader(open(sys.argv[1], "rb"))))' "$avro"
  done
  for cores in 2 1; do
    CORES=$cores BASE=python-csv,unzip-p-csv measure "index-csv" "$csv_bytes" "$B" index "$csvzip" --key segment-export/5e3c2a1b/2025-04-01/users-abcdef.zip
  done
  CORES=1 measure "python-csv" "$csv_bytes" "$PY" -c '
import csv, io, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
print(sum(sum(1 for _ in csv.reader(io.TextIOWrapper(z.open(m), encoding="utf-8", newline=""))) for m in z.namelist()))' "$csvzip"
  CORES=1 measure "unzip-p-csv" "$csv_bytes" sh -c "unzip -p '$csvzip' > /dev/null"
done

# Cold start: process start until the first poll of the Lambda Runtime API (median of 5).
cold=$(python3 scripts/cold_start.py "$B")
strip -o "$WORK/export-fetcher.stripped" "$B"
stripped=$(stat -c %s "$WORK/export-fetcher.stripped")

python3 - "$results" "$cold" "$stripped" "$RUNS" <<'PY'
import collections, statistics, sys
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    label, cores, base, bytes_, wall, user, sys_, rss, server = line.split()
    rows.setdefault((label, cores), {"base": base, "runs": []})["runs"].append(
        (int(bytes_), float(wall), float(user) + float(sys_), int(rss), server))
med = {k: statistics.median(w for _, w, *_ in v["runs"]) for k, v in rows.items()}
print("| command | cores | runs | median wall (s) | throughput (MB/s) | median CPU (s) | peak RSS (MiB) | server CPU (s) | ratio |")
print("|---|---|---|---|---|---|---|---|---|")
for (label, cores), v in sorted(rows.items(), key=lambda kv: (kv[0][1] != "1", 0)):
    runs = v["runs"]
    wall = med[(label, cores)]
    ratio = ", ".join(f"{wall / med[(b, cores)]:.2f}× {b}" for b in v["base"].split(",")
                      if b != "-" and (b, cores) in med)
    servers = [float(s) for *_, s in runs if s != "-"]
    server = f"{statistics.median(servers):.2f}" if servers else ""
    print(f"| {label} | {cores} | {len(runs)} | {wall:.2f} | {runs[0][0] / wall / 1e6:.0f} | "
          f"{statistics.median(c for _, _, c, _, _ in runs):.2f} | {max(r for _, _, _, r, _ in runs) / 1024:.1f} | "
          f"{server} | {ratio} |")
print(f"\ncold start (process start → first Runtime API poll, median of 5): {sys.argv[2]} ms")
print(f"stripped release binary: {int(sys.argv[3]) / 1e6:.1f} MB")
PY

# Many small objects (issue 13): 1,000 ~5 MB and 10,000 ~2 KB objects as Batch Operations events.
if [ "${MANY:-}" = 1 ]; then BUILD=0 scripts/bench-many.sh; fi
