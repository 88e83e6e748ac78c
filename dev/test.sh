#!/usr/bin/env bash
# The whole X-Ray test suite, on a fresh machine or a used one:
#
#   dev/test.sh
#
# 1. Python test tools into dev/.venv (pinned requirement files; reinstalled
#    only when they change): the ClickHouse dev server, the OTel Python SDK
#    and exporters the collector's real-client tests drive.
# 2. PostgreSQL: uses XRAY_TEST_POSTGRES_URL when set; else a server on
#    127.0.0.1:5432, started (or installed from Debian's packages and
#    started) when none answers.
# 3. ClickHouse: uses XRAY_TEST_CLICKHOUSE_URL when set (a real server);
#    else starts the dev server (dev/clickhouse-server) on a free port.
# 4. Runs every Rust test of the workspace, the dev server's own tests, the
#    Helm chart's tests and the web UI's end-to-end tests (headless Chromium,
#    installed from Debian's packages when missing).
#
# Everything it starts is stopped on exit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { printf '\ndev/test.sh: %s\n' "$*" >&2; }
started_pids=()
cleanup() {
  for pid in "${started_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
venv="$root/dev/.venv"

# --- ClickHouse (also creates dev/.venv) ---------------------------------------
if [ -z "${XRAY_TEST_CLICKHOUSE_URL:-}" ]; then
  say "starting the ClickHouse dev server"
  ch_pid_file="$(mktemp)"
  XRAY_TEST_CLICKHOUSE_URL="$(dev/clickhouse-server/start.sh --pid-file "$ch_pid_file")"
  started_pids+=("$(cat "$ch_pid_file")")
  export XRAY_TEST_CLICKHOUSE_URL
fi
say "ClickHouse at $XRAY_TEST_CLICKHOUSE_URL"

# --- Python test tools ----------------------------------------------------------
for req in dev/requirements-test.txt collector/tests/python/requirements.txt; do
  [ -f "$req" ] || continue
  stamp="$venv/.$(echo "$req" | tr '/' '_').sha256"
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing $req into dev/.venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req"
    echo "$want" >"$stamp"
  fi
done
export XRAY_TEST_PYTHON="$venv/bin/python"

# --- PostgreSQL -----------------------------------------------------------------
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if [ -z "${XRAY_TEST_POSTGRES_URL:-}" ]; then
  if ! pg_up; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      say "no PostgreSQL here: installing it from Debian's packages"
      if [ "$(id -u)" != 0 ]; then echo "dev/test.sh: need root (or XRAY_TEST_POSTGRES_URL) for PostgreSQL" >&2; exit 1; fi
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    fi
    say "starting PostgreSQL"
    for v in /etc/postgresql/*; do
      pg_ctlcluster --skip-systemctl-redirect "$(basename "$v")" main start >&2 || true
    done
    for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
    pg_up || { echo "dev/test.sh: PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }
  fi
  # trust auth on this kind of machine; otherwise give the postgres user a
  # password over the local socket and use it
  if psql "postgres://postgres@127.0.0.1:5432/postgres" -Atqc 'select 1' >/dev/null 2>&1; then
    pg_base="postgres://postgres@127.0.0.1:5432"
  else
    su postgres -c "psql -Atqc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
    pg_base="postgres://postgres:postgres@127.0.0.1:5432"
  fi
  psql "$pg_base/postgres" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
    || psql "$pg_base/postgres" -qc "CREATE DATABASE test" >/dev/null
  export XRAY_TEST_POSTGRES_URL="$pg_base/test"
fi
say "PostgreSQL at ${XRAY_TEST_POSTGRES_URL//:*@/:***@}"

# --- tests ----------------------------------------------------------------------
say "ClickHouse dev server tests"
"$venv/bin/python" -m pytest -q -p no:cacheprovider dev/clickhouse-server/test_server.py

say "Rust tests (cargo test --workspace)"
cargo test --workspace --all-targets --no-fail-fast
cargo test --workspace --doc --no-fail-fast
# The fuzzers (OTLP decode + map; each JSON compatibility endpoint's parse +
# map) run ~3 s inside the suite above; here for 60 s more each
# (XRAY_FUZZ_SECS overrides, XRAY_FUZZ_SEED replays a failure).
say "OTLP and compatibility-endpoint fuzzers (${XRAY_FUZZ_SECS:-60} s each)"
XRAY_FUZZ_SECS="${XRAY_FUZZ_SECS:-60}" cargo test -p xray-collector --test fuzz --test legacy_fuzz -- --nocapture

cargo build -q -p xray
xray_bin="${CARGO_TARGET_DIR:-$root/target}/debug/xray"
cargo build -q -p xray-sdk --example competitor_selection
example_bin="${CARGO_TARGET_DIR:-$root/target}/debug/examples/competitor_selection"

say "Helm chart tests"
XRAY_BIN="$xray_bin" helm/test.sh

say "Web UI end-to-end tests (headless Chromium)"
XRAY_BIN="$xray_bin" XRAY_EXAMPLE_BIN="$example_bin" ui/e2e/run.sh
say "all tests passed"
