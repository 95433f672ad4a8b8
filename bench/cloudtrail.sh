#!/usr/bin/env bash
# CloudTrail ingest benchmark: seclake vs DuckDB's read_json on the same generated CloudTrail
# files (gzip {"Records": [...]}, laid out as CloudTrail delivers them), in one run, on this
# machine. Prints records/s, output size and the ratios.
#
#   bench/cloudtrail.sh [RECORDS] [FILES]   (default 200000 100; needs python3 with duckdb)
#
# Inputs and lakes go to bench-out/ (git-ignored). The input is generated once per size.
set -euo pipefail
RECORDS=${1:-200000}
FILES=${2:-100}
source "$(dirname "$0")/common.sh"
IN="$OUT/cloudtrail-$RECORDS-$FILES"
[ -d "$IN" ] || python3 "$SHARED/gen_cloudtrail.py" --records "$RECORDS" --files "$FILES" --out-dir "$IN"

rm -rf "$OUT/ct-seclake" "$OUT/ct-duckdb"
cat $(find "$IN" -type f) > /dev/null   # warm the page cache for both
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "input: $IN ($(du -sm "$IN" | cut -f1) MiB gzip, $FILES files, $RECORDS records)"

start=$(date +%s.%N)
"$BIN" --lake "$OUT/ct-seclake" ingest --no-progress --no-rules "$IN" > "$OUT/seclake-ct.txt"
end=$(date +%s.%N)
sl_secs=$(echo "$end - $start" | bc -l)
sl_bytes=$(du -sb "$OUT/ct-seclake/panther_logs" | cut -f1)
sed 's/^/  seclake: /' "$OUT/seclake-ct.txt"

start=$(date +%s.%N)
python3 "$SHARED/duckdb_ingest_cloudtrail.py" "$IN/**/*.json.gz" "$OUT/ct-duckdb" "$(nproc)" | sed 's/^/  /'
end=$(date +%s.%N)
dd_secs=$(echo "$end - $start" | bc -l)
dd_bytes=$(du -sb "$OUT/ct-duckdb" | cut -f1)

printf 'seclake: %.2fs wall (process), %8.0f records/s, output %6.1f MiB\n' "$sl_secs" "$(echo "$RECORDS / $sl_secs" | bc -l)" "$(echo "$sl_bytes / 1048576" | bc -l)"
printf 'duckdb : %.2fs wall (process), %8.0f records/s, output %6.1f MiB\n' "$dd_secs" "$(echo "$RECORDS / $dd_secs" | bc -l)" "$(echo "$dd_bytes / 1048576" | bc -l)"
printf 'ratio  : seclake is %.1fx faster; output %.2fx the size of duckdb'"'"'s\n' "$(echo "$dd_secs / $sl_secs" | bc -l)" "$(echo "$sl_bytes / $dd_bytes" | bc -l)"
