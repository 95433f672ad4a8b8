#!/usr/bin/env bash
# Ingest benchmark: seclake vs DuckDB (AWS's documented regex) on the same generated S3 access
# log, in one run, on this machine: the two alternate ROUNDS times (default 3) and the best
# of each is compared. Prints each round, lines/s, output size and the ratios.
#
#   [ROUNDS=N] [FILES=N] bench/ingest.sh [LINES]   (default 1000000; needs python3 with duckdb,
#                                                  pyarrow, pytz)
#
# FILES=N splits the log into N files of consecutive lines, as AWS delivers access logs (many
# small objects whose times overlap), and both ingest the folder.
#
# Inputs and lakes go to bench-out/ (git-ignored). The input is generated once per line count.
set -euo pipefail
LINES=${1:-1000000}
source "$(dirname "$0")/common.sh"
IN=$(generated "$LINES")

if [ -n "${FILES:-}" ]; then
  DIR="$OUT/access-$LINES-in-$FILES"
  if [ ! -d "$DIR" ]; then
    mkdir -p "$DIR.tmp" && split -n "l/$FILES" -a 6 -d "$IN" "$DIR.tmp/part-" && mv "$DIR.tmp" "$DIR"
  fi
  cat "$DIR"/* > /dev/null
  machine
  echo "input: $DIR ($(du -sm "$DIR" | cut -f1) MiB, $LINES lines in $FILES files)"
  compare_ingest lines "$LINES" "$DIR" "$OUT/lake-seclake" "$OUT/lake-duckdb" "$SHARED/duckdb_ingest.py" "$DIR/part-*"
  exit
fi
cat "$IN" > /dev/null   # warm the page cache for both
machine
echo "input: $IN ($(du -m "$IN" | cut -f1) MiB, $LINES lines)"
compare_ingest lines "$LINES" "$IN" "$OUT/lake-seclake" "$OUT/lake-duckdb" "$SHARED/duckdb_ingest.py" "$IN"
