#!/usr/bin/env bash
# Fuzz smoke run (RELIABILITY.md, "Fuzzing"): installs cargo-fuzz if missing, generates the seed
# corpora, builds every target of fuzz/ and runs each for FUZZ_SECONDS (default 30). Exits
# non-zero when any target crashes; the crashing input is kept under fuzz/artifacts/<target>/.
#
#   FUZZ_SECONDS=10 scripts/fuzz.sh                 # CI smoke run, about a minute of fuzzing
#   FUZZ_SECONDS=1800 FUZZ_JOBS=2 scripts/fuzz.sh   # the longer run (per target, 2 processes)
#   FUZZ_TARGETS="decode_object" scripts/fuzz.sh    # some targets only
#
# Stable Rust only: cargo-fuzz's default AddressSanitizer needs `-Zsanitizer` (nightly), so the
# targets are built with `--sanitizer none`: libFuzzer's coverage instrumentation
# (`-Cpasses=sancov-module`, stable `-C` flags), debug assertions and overflow checks stay on.
# Every target is Rust over safe APIs; a panic, an overflow or a broken invariant is a crash.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-30}"
jobs="${FUZZ_JOBS:-1}"
# A fixed seed makes the CI smoke run repeatable (set FUZZ_SEED=0 for a random one).
seed="${FUZZ_SEED:-1}"
targets="${FUZZ_TARGETS:-key_detect trigger_parse decode_object avro_container csv_index jsonl_index}"
# The same flags for build and run, so that `run` never rebuilds. 16 codegen units halve the
# build time of the AWS SDK crates for a small loss of executions per second.
flags=(--sanitizer none --codegen-units 16)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (about a minute)" >&2
  cargo install cargo-fuzz --locked
fi

python3 fuzz/gen_corpus.py fuzz/corpus

started=$(date +%s)
cargo fuzz build "${flags[@]}"
echo "fuzz: built in $(( $(date +%s) - started )) s" >&2

parallel=()
if [ "$jobs" -gt 1 ]; then
  parallel=(-jobs="$jobs" -workers="$jobs")
fi

failed=()
for t in $targets; do
  echo "fuzz: $t for ${seconds}s" >&2
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t/last-run.log"
  if cargo fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -seed="$seed" \
      ${parallel[@]+"${parallel[@]}"} -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ *DONE)' "$log" \
      | tr '\n' ' ' | sed "s/^/fuzz: $t: /" >&2 || true
    echo >&2
  else
    echo "fuzz: $t CRASHED; input(s):" >&2
    ls -1 "fuzz/artifacts/$t" | grep -v last-run.log | sed "s|^|  fuzz/artifacts/$t/|" >&2 || true
    tail -n 40 "$log" >&2
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]} (reproduce: cargo fuzz run ${flags[*]} <target> <input>)" >&2
  exit 1
fi
echo "fuzz: no crash in $targets" >&2
