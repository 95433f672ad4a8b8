#!/usr/bin/env bash
# Ingest benchmark: seclake vs DuckDB (AWS's documented regex) on the same generated S3 access
# log, in one run, on this machine. Prints lines/s, output size and the ratios.
#
#   bench/ingest.sh [LINES]        (default 1000000; needs python3 with duckdb, pyarrow, pytz)
#
# Inputs and lakes go to bench-out/ (git-ignored). The input is generated once per line count.
set -euo pipefail
LINES=${1:-1000000}
source "$(dirname "$0")/common.sh"
IN=$(generated "$LINES")

rm -rf "$OUT/lake-seclake" "$OUT/lake-duckdb"
cat "$IN" > /dev/null   # warm the page cache for both
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "input: $IN ($(du -m "$IN" | cut -f1) MiB, $LINES lines)"

start=$(date +%s.%N)
"$BIN" --lake "$OUT/lake-seclake" ingest --no-progress --no-rules "$IN" > "$OUT/seclake-ingest.txt"
end=$(date +%s.%N)
sl_secs=$(echo "$end - $start" | bc -l)
sl_bytes=$(du -sb "$OUT/lake-seclake/panther_logs" | cut -f1)
sed 's/^/  seclake: /' "$OUT/seclake-ingest.txt"

start=$(date +%s.%N)
python3 "$SHARED/duckdb_ingest.py" "$IN" "$OUT/lake-duckdb" "$(nproc)" | sed 's/^/  /'
end=$(date +%s.%N)
dd_secs=$(echo "$end - $start" | bc -l)
dd_bytes=$(du -sb "$OUT/lake-duckdb" | cut -f1)

printf 'seclake: %.2fs wall (process), %8.0f lines/s, output %6.1f MiB\n' "$sl_secs" "$(echo "$LINES / $sl_secs" | bc -l)" "$(echo "$sl_bytes / 1048576" | bc -l)"
printf 'duckdb : %.2fs wall (process), %8.0f lines/s, output %6.1f MiB\n' "$dd_secs" "$(echo "$LINES / $dd_secs" | bc -l)" "$(echo "$dd_bytes / 1048576" | bc -l)"
printf 'ratio  : seclake is %.1fx faster; output %.2fx the size of duckdb'"'"'s\n' "$(echo "$dd_secs / $sl_secs" | bc -l)" "$(echo "$sl_bytes / $dd_bytes" | bc -l)"
