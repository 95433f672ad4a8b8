#!/usr/bin/env bash
# S3 benchmark: the same ingest, re-run and query suite on a local lake from local files, and
# on an S3 lake from an S3 prefix (s3s-fs, an S3-compatible server, over loopback HTTP), in one
# run. Shows what S3's protocol costs seclake (requests, signing, copies instead of renames),
# not network latency.
#
#   bench/s3.sh [LINES] [OBJECTS] [RUNS]   (default 1000000 lines in 500 objects, 3 query runs)
#
# The server is examples/s3_bench_server.rs (s3s-fs with TCP_NODELAY, as S3 sets it; the
# s3s-fs binary does not, and stalls 40 ms on most responses), built in release mode.
set -euo pipefail
LINES=${1:-1000000}
OBJECTS=${2:-500}
RUNS=${3:-3}
source "$(dirname "$0")/common.sh"

cargo build --quiet --release --locked --example s3_bench_server
SERVER_BIN="$CARGO_TARGET_DIR/release/examples/s3_bench_server"

# S3 delivers access logs as many small objects: split the generated log into OBJECTS files.
ONE=$(generated "$LINES")
SPLIT="$OUT/split-$LINES-$OBJECTS"
if [ ! -d "$SPLIT" ]; then
  mkdir -p "$SPLIT.tmp"
  split -n "l/$OBJECTS" -d -a 5 "$ONE" "$SPLIT.tmp/part-"
  mv "$SPLIT.tmp" "$SPLIT"
fi
ROOT="$OUT/s3root"
rm -rf "$ROOT" "$OUT/lake-s3-local"
mkdir -p "$ROOT/logs/bench" "$ROOT/lake"
cp -l "$SPLIT"/part-* "$ROOT/logs/bench/"

PORT=$((20000 + RANDOM % 20000))
"$SERVER_BIN" "$ROOT" "$PORT" bench bench-secret > "$OUT/s3-server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
for _ in $(seq 50); do curl -s -o /dev/null "$AWS_ENDPOINT_URL" && break; sleep 0.1; done

machine
echo "input: $LINES lines in $OBJECTS objects ($(du -sm "$SPLIT" | cut -f1) MiB); S3: s3s-fs $PORT on loopback"

# server_cpu: CPU seconds the S3 server has used so far (it shares the cores with seclake).
server_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$SERVER/stat"
}

# timed LABEL CMD...: run CMD, print its wall time and the server's CPU time meanwhile,
# remember the wall time in $SECS.
timed() {
  local label=$1 start end cpu0
  shift
  cpu0=$(server_cpu)
  start=$(date +%s.%N)
  "$@" > "$OUT/s3-last.txt"
  end=$(date +%s.%N)
  SECS=$(echo "$end - $start" | bc -l)
  printf '  %-26s %6.2fs (server CPU %5.2fs)  %s\n' "$label" "$SECS" "$(echo "$(server_cpu) - $cpu0" | bc -l)" \
    "$(grep -m1 '^files:' "$OUT/s3-last.txt" || true)"
}

echo "ingest (no rules):"
timed "local -> local lake" "$BIN" --lake "$OUT/lake-s3-local" ingest --no-progress --no-rules "$SPLIT"
LOCAL=$SECS
timed "s3 prefix -> s3 lake" "$BIN" --lake s3://lake/bench ingest --no-progress --no-rules s3://logs/bench/
S3=$SECS
printf '  %-26s %6.0f vs %.0f lines/s: S3 takes %.2fx the local time\n' "throughput" \
  "$(echo "$LINES / $LOCAL" | bc -l)" "$(echo "$LINES / $S3" | bc -l)" "$(echo "$S3 / $LOCAL" | bc -l)"

echo "re-run (nothing new; the cron case):"
timed "local" "$BIN" --lake "$OUT/lake-s3-local" ingest --no-progress --no-rules "$SPLIT"
LOCAL=$SECS
timed "s3" "$BIN" --lake s3://lake/bench ingest --no-progress --no-rules s3://logs/bench/
printf '  %-26s S3 takes %.2fx the local time\n' "" "$(echo "$SECS / $LOCAL" | bc -l)"

echo "queries (median of $RUNS in one process; server CPU over all runs):"
printf '  %-30s %10s %10s %8s %12s\n' query local_ms s3_ms s3/local server_cpu_s
for q in "$SHARED"/queries/*.sql; do
  l=$("$BIN" --lake "$OUT/lake-s3-local" query --bench-runs "$RUNS" -f "$q" | sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p')
  cpu0=$(server_cpu)
  s=$("$BIN" --lake s3://lake/bench query --bench-runs "$RUNS" -f "$q" | sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p')
  printf '  %-30s %10s %10s %8.2f %12.2f\n' "$(basename "$q")" "$l" "$s" "$(echo "$s / $l" | bc -l)" "$(echo "$(server_cpu) - $cpu0" | bc -l)"
done
