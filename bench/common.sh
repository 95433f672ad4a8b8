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
