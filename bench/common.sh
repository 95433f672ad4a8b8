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
# with seclake (no rules) and with the DuckDB peer, in this order, then print UNIT/s, output
# sizes and the ratios. COUNT is how many UNITs the input holds.
compare_ingest() {
  local unit=$1 count=$2 input=$3 lake=$4 duck=$5 script=$6 duck_input=$7
  rm -rf "$lake" "$duck"
  local start end sl_secs sl_bytes dd_secs dd_bytes
  start=$(date +%s.%N)
  "$BIN" --lake "$lake" ingest --no-progress --no-rules "$input" > "$lake.txt"
  end=$(date +%s.%N)
  sl_secs=$(echo "$end - $start" | bc -l)
  sl_bytes=$(du -sb "$lake/panther_logs" | cut -f1)
  sed 's/^/  seclake: /' "$lake.txt"

  start=$(date +%s.%N)
  python3 "$script" "$duck_input" "$duck" "$(nproc)" | sed 's/^/  /'
  end=$(date +%s.%N)
  dd_secs=$(echo "$end - $start" | bc -l)
  dd_bytes=$(du -sb "$duck" | cut -f1)

  printf "seclake: %.2fs wall (process), %8.0f $unit/s, output %6.1f MiB\n" "$sl_secs" "$(echo "$count / $sl_secs" | bc -l)" "$(echo "$sl_bytes / 1048576" | bc -l)"
  printf "duckdb : %.2fs wall (process), %8.0f $unit/s, output %6.1f MiB\n" "$dd_secs" "$(echo "$count / $dd_secs" | bc -l)" "$(echo "$dd_bytes / 1048576" | bc -l)"
  printf 'ratio  : seclake is %.1fx faster; output %.2fx the size of duckdb'"'"'s\n' "$(echo "$dd_secs / $sl_secs" | bc -l)" "$(echo "$sl_bytes / $dd_bytes" | bc -l)"
}
