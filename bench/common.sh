# Shared setup for the benchmark scripts (sourced, not run): repository root as working
# directory, a release build, the peers' Python packages, and a generated input of N lines.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SHARED=${SHARED:-../shared/bench}
OUT=bench-out
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seclake-target}"
mkdir -p "$OUT"
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/seclake"
python3 -c 'import duckdb, pyarrow' 2>/dev/null || pip install -q duckdb pyarrow pytz

# generated N: path of an S3 access log of N lines from the shared generator (made once).
generated() {
  local f="$OUT/access-$1.log"
  [ -s "$f" ] || python3 "$SHARED/gen_s3_access_logs.py" --lines "$1" > "$f"
  echo "$f"
}

# machine: one line describing this machine, printed by every benchmark.
machine() {
  echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
}

# compare_ingest UNIT COUNT INPUT SECLAKE_LAKE DUCKDB_OUT DUCKDB_SCRIPT DUCKDB_INPUT: ingest INPUT
# with seclake (no rules) and with the DuckDB peer, alternating, ROUNDS times each (default 3),
# then print each round, the best time of each and UNIT/s, output sizes and the ratio of the
# bests. COUNT is how many UNITs the input holds. Best of several alternating runs: the same
# ingest varies by 30% between runs on a shared machine, for both programs.
compare_ingest() {
  local unit=$1 count=$2 input=$3 lake=$4 duck=$5 script=$6 duck_input=$7
  local rounds=${ROUNDS:-3} start end sl_secs dd_secs sl_best=999999 dd_best=999999 sl_bytes dd_bytes
  for round in $(seq "$rounds"); do
    rm -rf "$lake" "$duck"
    start=$(date +%s.%N)
    "$BIN" --lake "$lake" ingest --no-progress --no-rules "$input" > "$lake.txt"
    end=$(date +%s.%N)
    sl_secs=$(echo "$end - $start" | bc -l)
    start=$(date +%s.%N)
    python3 "$script" "$duck_input" "$duck" "$(nproc)" > "$duck.txt"
    end=$(date +%s.%N)
    dd_secs=$(echo "$end - $start" | bc -l)
    printf "round %d: seclake %.2fs, duckdb %.2fs: %.1fx\n" "$round" "$sl_secs" "$dd_secs" "$(echo "$dd_secs / $sl_secs" | bc -l)"
    sl_best=$(echo "if ($sl_secs < $sl_best) $sl_secs else $sl_best" | bc -l)
    dd_best=$(echo "if ($dd_secs < $dd_best) $dd_secs else $dd_best" | bc -l)
  done
  sed 's/^/  seclake: /' "$lake.txt"
  sed 's/^/  /' "$duck.txt"
  sl_bytes=$(du -sb "$lake/panther_logs" | cut -f1)
  dd_bytes=$(du -sb "$duck" | cut -f1)

  printf "seclake: %.2fs wall (process, best of $rounds), %8.0f $unit/s, output %6.1f MiB\n" "$sl_best" "$(echo "$count / $sl_best" | bc -l)" "$(echo "$sl_bytes / 1048576" | bc -l)"
  printf "duckdb : %.2fs wall (process, best of $rounds), %8.0f $unit/s, output %6.1f MiB\n" "$dd_best" "$(echo "$count / $dd_best" | bc -l)" "$(echo "$dd_bytes / 1048576" | bc -l)"
  printf 'ratio  : seclake is %.1fx faster; output %.2fx the size of duckdb'"'"'s\n' "$(echo "$dd_best / $sl_best" | bc -l)" "$(echo "$sl_bytes / $dd_bytes" | bc -l)"
}
