#!/usr/bin/env bash
# Start the chdb-backed ClickHouse HTTP server (dev/tests only) in the background.
#
#   export XRAY_TEST_CLICKHOUSE_URL=$(dev/clickhouse-server/start.sh --pid-file /tmp/ch.pid)
#   ...
#   kill "$(cat /tmp/ch.pid)"
#
# Prints only the URL (http://127.0.0.1:PORT) on stdout; everything else goes to stderr.
# Options:
#   --pid-file PATH   write the server's pid there (else the stop command is printed on stderr)
#   --data-dir PATH   keep data there (default: a fresh temp dir, removed when the server exits)
#   --port N          listen on N (default 0: a free port)
#   --log PATH        server log (default: a temp file, named on stderr)
#   --timeout SECS    how long to wait for /ping (default 120)
# Environment: PYTHON (interpreter used to create the venv, default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$(cd "$here/.." && pwd)/.venv"
python="${PYTHON:-python3}"

pid_file="" data_dir="" port=0 log="" timeout=120
while [ $# -gt 0 ]; do
  case "$1" in
    --pid-file) pid_file="$2"; shift 2 ;;
    --data-dir) data_dir="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --log) log="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" >&2; exit 0 ;;
    *) echo "start.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

say() { echo "clickhouse-server/start.sh: $*" >&2; }

# --- venv (idempotent) --------------------------------------------------------
venv_ok() { [ -x "$venv/bin/python" ] && "$venv/bin/python" -m pip --version >/dev/null 2>&1; }

if ! venv_ok; then
  rm -rf "$venv"
  if ! "$python" -m venv "$venv" >/dev/null 2>&1 || ! venv_ok; then
    # Debian/Ubuntu ship venv/ensurepip separately (python3-venv / python3.X-venv).
    rm -rf "$venv"
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      pyver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
      say "python venv support missing; installing python3-venv"
      apt-get update -qq >&2 || true
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${pyver}-venv" >&2 \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
      "$python" -m venv "$venv" >&2
    fi
    venv_ok || { say "cannot create a venv with $python (install python3-venv)"; exit 1; }
  fi
fi

req="$here/requirements.txt"
stamp="$venv/.clickhouse-server-requirements"
want="$(cat "$req")"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing $(basename "$req") into $venv"
  pip_log="$(mktemp)"
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req" >"$pip_log" 2>&1; then
    cat "$pip_log" >&2; rm -f "$pip_log"; say "pip install failed"; exit 1
  fi
  rm -f "$pip_log"
  printf '%s' "$want" >"$stamp"
fi

# --- start --------------------------------------------------------------------
state="$(mktemp -d "${TMPDIR:-/tmp}/xray-chserver.XXXXXX")"
port_file="$state/port"
own_pid_file="${pid_file:-$state/pid}"
[ -n "$log" ] || log="$state/server.log"
rm -f "$own_pid_file"

args=(--host 127.0.0.1 --port "$port" --port-file "$port_file" --pid-file "$own_pid_file")
[ -n "$data_dir" ] && args+=(--data-dir "$data_dir")

# Detach fully: no stdin, stdout/stderr to the log (so `$(start.sh)` returns).
nohup "$venv/bin/python" "$here/server.py" "${args[@]}" </dev/null >"$log" 2>&1 &
launcher=$!

deadline=$(( $(date +%s) + timeout ))
until [ -s "$port_file" ] && [ -s "$own_pid_file" ]; do
  if ! kill -0 "$launcher" 2>/dev/null; then
    cat "$log" >&2; say "server exited during startup"; exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    cat "$log" >&2; kill "$launcher" 2>/dev/null || true; say "timed out waiting for the server"; exit 1
  fi
  sleep 0.1
done
port="$(cat "$port_file")"
url="http://127.0.0.1:$port"

"$venv/bin/python" - "$url" "$timeout" <<'EOF' || { cat "$log" >&2; kill "$launcher" 2>/dev/null || true; say "/ping did not answer"; exit 1; }
import sys, time, urllib.request
url, timeout = sys.argv[1], float(sys.argv[2])
end = time.time() + timeout
while True:
    try:
        with urllib.request.urlopen(url + "/ping", timeout=5) as r:
            if r.read() == b"Ok.\n":
                sys.exit(0)
    except OSError:
        pass
    if time.time() > end:
        sys.exit(1)
    time.sleep(0.1)
EOF

pid="$(cat "$own_pid_file")"
if [ -z "$pid_file" ]; then
  say "server pid $pid, log $log; stop with: kill $pid"
else
  say "server pid $pid (in $pid_file), log $log"
fi
echo "$url"
