#!/usr/bin/env bash
# Rules benchmark, in one run on this machine:
#  1. rule evaluation: seclake's compiled SQL rules vs the per-event Python rules peer
#     (../shared/bench/python_rules.py: the S3 tutorial's four rules), on the same events;
#  2. ingest with every built-in rule (disabled ones included), and with the rules enabled by
#     default, vs ingest without rules.
#
#   bench/rules.sh [LINES]        (default 1000000; needs python3 with pyarrow)
set -euo pipefail
LINES=${1:-1000000}
source "$(dirname "$0")/common.sh"
IN=$(generated "$LINES")
FOUR=(--rule AWS.S3.ServerAccess.UnknownRequester --rule AWS.S3.ServerAccess.IPWhitelist
      --rule AWS.S3.ServerAccess.Insecure --rule AWS.S3.ServerAccess.Error)
# Every built-in rule, the ones shipped disabled (configuration required) included.
ALL=("${FOUR[@]}" --rule AWS.S3.ServerAccess.Unauthenticated
     --rule Seclake.S3.ServerAccess.Defacement --rule AWS.S3.BucketPolicyModified)

cat "$IN" > /dev/null
machine
echo "input: $IN ($LINES lines)"

timed() { # timed OUTFILE CMD...: run, keep stdout, print seconds
  local out=$1; shift
  local s e; s=$(date +%s.%N); "$@" > "$out"; e=$(date +%s.%N)
  echo "$e - $s" | bc -l
}

# Ingest without rules, with every built-in rule, and with the rules enabled by default,
# alternating, three times each; the best of each is compared (the machine is noisy: the same
# ingest varies by 30% between runs).
t_plain=999; t_rules=999; t_default=999
best() { echo "if ($1 < $2) $1 else $2" | bc -l; }
for round in 1 2 3; do
  rm -rf "$OUT/lake-norules" "$OUT/lake-rules" "$OUT/lake-default"
  t=$(timed "$OUT/ingest-norules.txt" "$BIN" --lake "$OUT/lake-norules" ingest --no-progress --no-rules "$IN")
  t_plain=$(best "$t" "$t_plain")
  t=$(timed "$OUT/ingest-rules.txt" "$BIN" --lake "$OUT/lake-rules" ingest --no-progress "${ALL[@]}" "$IN")
  t_rules=$(best "$t" "$t_rules")
  t=$(timed "$OUT/ingest-default.txt" "$BIN" --lake "$OUT/lake-default" ingest --no-progress "$IN")
  t_default=$(best "$t" "$t_default")
done
grep -h detections "$OUT/ingest-rules.txt" | sed 's/^/  with all built-in rules: /'
grep -h detections "$OUT/ingest-default.txt" | sed 's/^/  with the rules enabled by default: /'

py=$(python3 "$SHARED/python_rules.py" "$OUT/lake-norules/panther_logs/aws_s3serveraccess")
echo "  $py"
py_rate=$(echo "$py" | sed -E 's/.*= ([0-9,]+) events\/s.*/\1/' | tr -d ,)

"$BIN" --lake "$OUT/lake-norules" detect --since 2000-01-01 "${FOUR[@]}" > "$OUT/detect.txt"
sed 's/^/  seclake: /' "$OUT/detect.txt"
sl_rate=$(sed -nE 's/^rule conditions: .* = ([0-9]+) events\/s/\1/p' "$OUT/detect.txt")
sl_full=$(sed -nE 's/^rule evaluation with .* = ([0-9]+) events\/s/\1/p' "$OUT/detect.txt")

printf 'rule conditions, 4 tutorial rules: seclake %.0f events/s, python %.0f events/s: %.0fx\n' \
  "$sl_rate" "$py_rate" "$(echo "$sl_rate / $py_rate" | bc -l)"
printf 'with titles, dedup strings and alert context of every match: %.0f events/s: %.0fx\n' \
  "$sl_full" "$(echo "$sl_full / $py_rate" | bc -l)"
printf 'ingest (best of 3): %.2fs without rules, %.2fs with all built-in rules: %.0f%% of the throughput\n' \
  "$t_plain" "$t_rules" "$(echo "100 * $t_plain / $t_rules" | bc -l)"
printf 'ingest (best of 3) with the rules enabled by default: %.2fs: %.0f%% of the throughput\n' \
  "$t_default" "$(echo "100 * $t_plain / $t_default" | bc -l)"
echo "matches per rule (compare with python's hits=[unknown requester, ip whitelist, insecure, errors]):"
"$BIN" --lake "$OUT/lake-norules" query --format csv \
  "SELECT p_rule_id, count(*) AS matches FROM panther_rule_matches.aws_s3serveraccess GROUP BY 1 ORDER BY 1" | sed 's/^/  /'
