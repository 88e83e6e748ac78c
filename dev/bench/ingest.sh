#!/usr/bin/env bash
# End-to-end ingest benchmark: X-Ray (SQLite, ClickHouse) and Arize Phoenix
# under the same OTLP load, on this machine, in one run. Prints one table.
#
#   dev/bench/ingest.sh                                  # all targets, 30s each
#   dev/bench/ingest.sh --targets sqlite,phoenix --duration 60s --concurrency 8
#
# 1. builds `xray` and `xray-loadgen` in release mode;
# 2. installs Phoenix into dev/bench/.venv-phoenix (pinned, once);
# 3. starts the ClickHouse dev server (dev/clickhouse-server) unless
#    XRAY_TEST_CLICKHOUSE_URL points at a server;
# 4. runs dev/bench/ingest.py, which starts each server on free ports with a
#    fresh store, runs `xray-loadgen send`, waits until the store holds what
#    was acknowledged, and checks the counts are exact.
# Every option is passed to ingest.py (see `dev/bench/ingest.py --help`).
# Exits non-zero when a store does not hold exactly what was acknowledged.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
say() { printf 'dev/bench/ingest.sh: %s\n' "$*" >&2; }
started_pids=()
cleanup() { for pid in "${started_pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

targets="sqlite,clickhouse,phoenix"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = "--targets" ] && targets="${args[$((i + 1))]}"
done

target_dir="${CARGO_TARGET_DIR:-$root/target}"
say "building xray and xray-loadgen (release)"
cargo build --release --quiet -p xray -p xray-loadgen

extra=(--xray-bin "$target_dir/release/xray" --loadgen-bin "$target_dir/release/xray-loadgen")
if [[ "$targets" == *phoenix* ]]; then
  venv="$(dev/bench/phoenix-venv.sh)"
  extra+=(--phoenix-venv "$venv")
fi
if [[ "$targets" == *clickhouse* ]]; then
  if [ -z "${XRAY_TEST_CLICKHOUSE_URL:-}" ]; then
    say "starting the ClickHouse dev server"
    pid_file="$(mktemp)"
    XRAY_TEST_CLICKHOUSE_URL="$(dev/clickhouse-server/start.sh --pid-file "$pid_file")"
    started_pids+=("$(cat "$pid_file")")
  fi
  extra+=(--clickhouse-url "$XRAY_TEST_CLICKHOUSE_URL")
fi
python3 dev/bench/ingest.py "${extra[@]}" "$@"
