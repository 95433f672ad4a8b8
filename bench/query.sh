#!/usr/bin/env bash
# Query benchmark: the shared query suite on a lake built by `seclake ingest`, run by seclake
# and by DuckDB over the same Parquet files, in one run. Each query: one warm-up, then RUNS
# runs in-process; the median is printed with the ratio (duckdb / seclake, >1 = seclake faster).
#
#   bench/query.sh [FILES] [RUNS]    (default 10 generated files of 1M lines = 10M rows, 5 runs)
#   COMPACT=1 bench/query.sh         on a compacted copy of that lake (`seclake compact`, timed)
#
# File i is the generator's output for --seed i (distinct events over the same 7 days; copies
# of one file would put identical rows side by side once compacted, which real logs do not
# have). The lake is ingested once, in one run, as the issue asks.
set -euo pipefail
COPIES=${1:-10}
RUNS=${2:-5}
LINES=$((COPIES * 1000000))
source "$(dirname "$0")/common.sh"
IN="$OUT/access-${COPIES}seeds"
LAKE="$OUT/lake-seeds-q$LINES"
mkdir -p "$IN"
generated 1000000 > /dev/null
ln -f "$OUT/access-1000000.log" "$IN/seed-1.log"
for i in $(seq 2 "$COPIES"); do
  [ -s "$IN/seed-$i.log" ] || python3 "$SHARED/gen_s3_access_logs.py" --lines 1000000 --seed "$i" > "$IN/seed-$i.log"
done
[ -d "$LAKE/panther_logs" ] || "$BIN" --lake "$LAKE" ingest --no-progress "$IN"
if [ "${COMPACT:-0}" = 1 ]; then
  if [ ! -d "$LAKE-compact/panther_logs" ]; then
    rm -rf "$LAKE-compact"; cp -r "$LAKE" "$LAKE-compact"
    /usr/bin/time -f "compact: %e s wall, %U s user, %M KB peak" "$BIN" --lake "$LAKE-compact" compact
  fi
  LAKE="$LAKE-compact"
fi
echo "lake: $LAKE, $(find "$LAKE/panther_logs" -name '*.parquet' | wc -l) files"
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
