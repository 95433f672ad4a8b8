#!/usr/bin/env bash
# CloudTrail ingest benchmark: seclake vs DuckDB's read_json on the same generated CloudTrail
# files (gzip {"Records": [...]}, laid out as CloudTrail delivers them), in one run, on this
# machine: the two alternate ROUNDS times (default 3) and the best of each is compared.
# Prints each round, records/s, output size and the ratios.
#
#   [ROUNDS=N] bench/cloudtrail.sh [RECORDS] [FILES]   (default 200000 100; needs python3 with duckdb)
#
# Inputs and lakes go to bench-out/ (git-ignored). The input is generated once per size.
set -euo pipefail
RECORDS=${1:-200000}
FILES=${2:-100}
source "$(dirname "$0")/common.sh"
IN="$OUT/cloudtrail-$RECORDS-$FILES"
[ -d "$IN" ] || python3 "$SHARED/gen_cloudtrail.py" --records "$RECORDS" --files "$FILES" --out-dir "$IN"

cat $(find "$IN" -type f) > /dev/null   # warm the page cache for both
machine
echo "input: $IN ($(du -sm "$IN" | cut -f1) MiB gzip, $FILES files, $RECORDS records)"
compare_ingest records "$RECORDS" "$IN" "$OUT/ct-seclake" "$OUT/ct-duckdb" "$SHARED/duckdb_ingest_cloudtrail.py" "$IN/**/*.json.gz"
