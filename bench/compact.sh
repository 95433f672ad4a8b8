#!/usr/bin/env bash
# Compaction benchmark: 1M generated lines delivered as FILES time-ordered objects (as AWS
# delivers access logs), ingested one transaction per object (as a cron ingesting each new
# delivery would), then `seclake compact`. Prints files, bytes and compaction time, and the
# shared query suite with seclake and DuckDB on the lake before and after, in one run
# (medians of RUNS; the ratios are after/before, <1 = faster).
#
#   bench/compact.sh [FILES] [RUNS]    (default 64 objects, 9 runs)
set -euo pipefail
FILES=${1:-64}
RUNS=${2:-9}
source "$(dirname "$0")/common.sh"
IN="$OUT/delivered-1m-$FILES"
[ -d "$IN" ] || python3 "$SHARED/gen_s3_access_logs.py" --lines 1000000 --files "$FILES" --out-dir "$IN"
BEFORE="$OUT/lake-delivered-$FILES"
AFTER="$BEFORE-compact"
rm -rf "$BEFORE" "$AFTER"
"$BIN" --lake "$BEFORE" ingest --no-progress --no-rules --txn-bytes 1 "$IN" | tail -1
cp -r "$BEFORE" "$AFTER"
/usr/bin/time -f "compact: %e s wall, %U s user, %M KB peak" "$BIN" --lake "$AFTER" compact
machine
for l in "$BEFORE" "$AFTER"; do
  echo "$l: $(find "$l/panther_logs" -name '*.parquet' | wc -l) files, $(du -sb "$l/panther_logs" | cut -f1) bytes"
done
median() { sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p'; }
printf '%-32s %10s %10s %6s %10s %10s %6s\n' query seclake_ms after ratio duckdb_ms after ratio
for q in "$SHARED"/queries/*.sql; do
  sa=$("$BIN" --lake "$BEFORE" query --bench-runs "$RUNS" -f "$q" | median)
  sb=$("$BIN" --lake "$AFTER" query --bench-runs "$RUNS" -f "$q" | median)
  da=$(python3 "$SHARED/duckdb_query.py" "$BEFORE" "$q" --runs "$RUNS" --threads "$(nproc)" | median)
  db=$(python3 "$SHARED/duckdb_query.py" "$AFTER" "$q" --runs "$RUNS" --threads "$(nproc)" | median)
  printf '%-32s %10s %10s %6.2f %10s %10s %6.2f\n' "$(basename "$q")" "$sa" "$sb" \
    "$(echo "$sb / $sa" | bc -l)" "$da" "$db" "$(echo "$db / $da" | bc -l)"
done
