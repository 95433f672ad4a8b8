#!/usr/bin/env bash
# Query benchmark: the shared query suite on a lake built by `seclake ingest`, run by seclake
# and by DuckDB over the same Parquet files, in one run. Each query: one warm-up, then RUNS
# runs in-process; the median is printed with the ratio (duckdb / seclake, >1 = seclake faster).
#
#   bench/query.sh [COPIES] [RUNS]    (default 10 copies of 1M generated lines = 10M rows, 5 runs)
#
# The generator makes about 33,000 lines/s, so the 10M-row lake ingests COPIES hard links of
# one generated 1M-line file (each link is its own source to seclake).
set -euo pipefail
COPIES=${1:-10}
RUNS=${2:-5}
LINES=$((COPIES * 1000000))
source "$(dirname "$0")/common.sh"
ONE=$(generated 1000000)
IN="$OUT/access-${COPIES}x1m"
LAKE="$OUT/lake-q$LINES"
mkdir -p "$IN"
for i in $(seq 1 "$COPIES"); do [ -e "$IN/part-$i.log" ] || ln "$ONE" "$IN/part-$i.log"; done
[ -d "$LAKE/panther_logs" ] || "$BIN" --lake "$LAKE" ingest --no-progress "$IN"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); lake: $LINES rows"
printf '%-32s %12s %12s %8s %s\n' query seclake_ms duckdb_ms ratio rows
for q in "$SHARED"/queries/*.sql; do
  name=$(basename "$q")
  s=$("$BIN" --lake "$LAKE" query --bench-runs "$RUNS" -f "$q")
  d=$(python3 "$SHARED/duckdb_query.py" "$LAKE" "$q" --runs "$RUNS" --threads "$(nproc)")
  sm=$(echo "$s" | sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p'); sr=$(echo "$s" | sed -n 's/.*rows=\([0-9]*\).*/\1/p')
  dm=$(echo "$d" | sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p'); dr=$(echo "$d" | sed -n 's/.*rows=\([0-9]*\).*/\1/p')
  printf '%-32s %12s %12s %8.2f %s\n' "$name" "$sm" "$dm" "$(echo "$dm / $sm" | bc -l)" "$sr/$dr"
done
