#!/usr/bin/env bash
# Resource check on hostile inputs (see RELIABILITY.md): every input of at most 2 MB compressed
# must be handled within MAX_WALL seconds and MAX_RSS_MIB of peak RSS, without a panic, and a
# bomb must never be reported `complete`.
#
#   scripts/hostile.sh                 # build (release), generate, run, print the table
#   FLOCK=1 scripts/hostile.sh         # take /tmp/cargo.lock around the build (shared machines)
#   NO_BUILD=1 CASES=10 scripts/hostile.sh   # reuse target/release; only cases whose file starts with 10
#
# Inputs come from scripts/gen_hostile.py (their list, keys and expected statuses: cases.tsv).
# Each case runs `export-fetcher index FILE --key KEY --out DIR` under /usr/bin/time and a
# TIMEOUT-second timeout. A case FAILs when it panics (exit other than 0/1/2, or "panicked" on
# stderr), is `complete` where it should not be (or not `complete` where it should), takes more
# than MAX_WALL seconds or more than MAX_RSS_MIB. The script exits 1 if any case FAILs.
# The table is Markdown, to be pasted as is.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_WALL=${MAX_WALL:-10}
MAX_RSS_MIB=${MAX_RSS_MIB:-64}
TIMEOUT=${TIMEOUT:-30}
CASES=${CASES:-}
OUT=${HOSTILE_DIR:-target/hostile}
B=${FETCHER:-target/release/export-fetcher}

if [ ! -x /usr/bin/time ] || ! /usr/bin/time -f %e true >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq time >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq time >/dev/null)
  fi
  [ -x /usr/bin/time ] || { echo "hostile: GNU time (/usr/bin/time) is needed" >&2; exit 1; }
fi

if [ "${NO_BUILD:-0}" != 1 ]; then
  if [ "${FLOCK:-0}" = 1 ] && command -v flock >/dev/null; then
    flock /tmp/cargo.lock cargo build --release --locked --quiet
  else
    cargo build --release --locked --quiet
  fi
fi
[ -x "$B" ] || { echo "hostile: $B is missing (build it, or drop NO_BUILD)" >&2; exit 1; }

mkdir -p "$OUT"
python3 scripts/gen_hostile.py "$OUT/cases" 2> "$OUT/gen.log" || { cat "$OUT/gen.log" >&2; exit 1; }
work=$OUT/work
runs=$OUT/runs
rm -rf "$runs"; mkdir -p "$runs"

cpu=$(grep -m1 -E '^(model name|Model)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
[ -n "$cpu" ] || cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || commit="$commit (with uncommitted changes)"
echo "Hostile inputs: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit"
echo "Machine: $(nproc) CPUs, ${cpu:-unknown CPU}, $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo)"
echo "Limits: wall <= ${MAX_WALL} s, peak RSS <= ${MAX_RSS_MIB} MiB, timeout ${TIMEOUT} s; every input <= 2,000,000 bytes"
sed -n 's/^gen_hostile: //p' "$OUT/gen.log" | sed 's/^/Note: /' | grep -v ' cases in ' || true
echo
echo "| case | bytes | expected | status | exit | wall s | peak RSS MiB | manifest bytes | written bytes | result |"
echo "|---|---:|---|---|---:|---:|---:|---:|---:|---|"

summary='import json, os, re, sys
path = sys.argv[1]
status, reason = "-", ""
try:
    if os.path.getsize(path) > (32 << 20):
        head = open(path, "rb").read(4096).decode("utf-8", "replace")
        status = re.search(r"\"status\": *\"([a-z]+)\"", head).group(1)
    else:
        m = json.load(open(path))
        status = m.get("status", "-")
        errs = [e.get("message", "") for e in m.get("errors", [])]
        errs += [e.get("message", "") for p in m.get("parts", []) for e in p.get("errors", [])]
        reason = errs[0] if errs else ""
except Exception:
    pass
print(status + "\t" + " ".join(reason.split()))'
failures=0
details=()
while IFS=$'\t' read -r file key expected what; do
  [ -n "$file" ] || continue
  case "$file" in "$CASES"*) ;; *) continue ;; esac
  name=${file%%.*}
  r=$runs/$name
  rm -rf "$work"; mkdir -p "$work" "$r"
  rc=0
  /usr/bin/time -f "%e %M" -o "$r/time" \
    timeout --foreground -k 5 "$TIMEOUT" "$B" index "$OUT/cases/$file" --key "$key" --out "$work" \
    >"$r/stdout" 2>"$r/stderr" || rc=$?
  read -r wall rss_kb < <(tail -1 "$r/time")
  rss=$(awk -v k="$rss_kb" 'BEGIN {printf "%.1f", k / 1024}')
  # The manifest's status and first error (a huge manifest is only searched at its head).
  IFS=$'\t' read -r status reason < <(python3 -c "$summary" "$r/stdout") || true
  manifest=$(wc -c < "$r/stdout")
  written=$(find "$work" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  size=$(stat -c %s "$OUT/cases/$file")

  why=()
  if [ "$rc" = 124 ] || { [ "$rc" = 137 ] && awk -v w="$wall" -v t="$TIMEOUT" 'BEGIN {exit !(w >= t)}'; }; then
    why+=("timed out after ${TIMEOUT} s")
  elif [ "$rc" -gt 2 ]; then
    why+=("exit $rc (panic or signal)")
  fi
  grep -q panicked "$r/stderr" && why+=("panicked")
  case "$expected" in
    complete) [ "$status" = complete ] || why+=("status $status, expected complete") ;;
    any) ;;
    *) [ "$status" != complete ] || why+=("complete, expected $expected") ;;
  esac
  awk -v w="$wall" -v m="$MAX_WALL" 'BEGIN {exit !(w > m)}' && why+=("wall ${wall} s > ${MAX_WALL} s")
  awk -v k="$rss_kb" -v m="$MAX_RSS_MIB" 'BEGIN {exit !(k > m * 1024)}' && why+=("RSS ${rss} MiB > ${MAX_RSS_MIB} MiB")

  if [ ${#why[@]} -eq 0 ]; then
    result=PASS
  else
    result="FAIL: $(IFS=';'; echo "${why[*]}" | sed 's/;/; /g')"
    failures=$((failures + 1))
  fi
  note=""
  case "$expected" in failed | partial) [ "$status" = "$expected" ] || note=" (expected $expected)" ;; esac
  echo "| $name | $size | $expected | $status$note | $rc | $wall | $rss | $manifest | $written | $result |"
  [ -n "$reason" ] || [ "$status" = complete ] || reason=$(grep -v '^\s*$' "$r/stderr" | tail -1 || true)
  [ -n "$reason" ] || [ "$status" != - ] || reason="no manifest on stdout"
  reason=${reason:-no error}
  details+=("- $name ($what): ${reason:0:220}")
done < "$OUT/cases/cases.tsv"
rm -rf "$work"

echo
echo "What each case is, and the first error its manifest reports (or the last line of stderr):"
printf '%s\n' "${details[@]}"
echo
if [ "$failures" -gt 0 ]; then
  echo "hostile: $failures case(s) FAIL (outputs in $runs/)"
  exit 1
fi
echo "hostile: all cases PASS"
