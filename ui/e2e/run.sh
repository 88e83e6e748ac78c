#!/usr/bin/env bash
# End-to-end tests of the X-Ray web UI.
#
# Starts `xray serve` on free ports with a fresh SQLite store in a temp dir,
# loads data (load-data.mjs: the SDK's competitor-selection example run
# against it over OTLP/gRPC, plus two generated pipelines over OTLP/HTTP),
# starts a second `xray serve` with auth.required = true and one app
# (created with `xray apps create`) holding one run, drives headless
# Chromium through every view (ui.test.mjs) and stops the servers.
#
# Environment:
#   XRAY_BIN          the xray binary to test (default: build it with cargo)
#   XRAY_EXAMPLE_BIN  the built competitor_selection example (default: build
#                     it with cargo)
#   CARGO_TARGET_DIR  where cargo builds (default: <repo>/target)
#   CHROMIUM_BIN      default /usr/bin/chromium (installed with apt-get if missing)
#   UPDATE_DOCS=1     also write the screenshots to docs/img/ (for docs/ui.md)
#
# Screenshots and the server log land in <repo>/target/ui-e2e/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/target/ui-e2e"
mkdir -p "$out"

say() { printf 'ui-e2e: %s\n' "$*" >&2; }

# --- browser ----------------------------------------------------------------
chromium_bin="${CHROMIUM_BIN:-/usr/bin/chromium}"
if [ ! -x "$chromium_bin" ]; then
  say "installing Debian's chromium"
  sudo_cmd=""
  if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi

# --- test dependencies (pinned in package-lock.json) --------------------------
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

# --- the server ----------------------------------------------------------------
xray_bin="${XRAY_BIN:-}"
if [ -z "$xray_bin" ]; then
  say "building xray"
  (cd "$root" && cargo build -q -p xray)
  xray_bin="${CARGO_TARGET_DIR:-$root/target}/debug/xray"
fi
[ -x "$xray_bin" ] || { say "XRAY_BIN=$xray_bin is not an executable"; exit 1; }

example_bin="${XRAY_EXAMPLE_BIN:-}"
if [ -z "$example_bin" ]; then
  say "building the competitor_selection example"
  (cd "$root" && cargo build -q -p xray-sdk --example competitor_selection)
  example_bin="${CARGO_TARGET_DIR:-$root/target}/debug/examples/competitor_selection"
fi
[ -x "$example_bin" ] || { say "XRAY_EXAMPLE_BIN=$example_bin is not an executable"; exit 1; }

free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}
api_port="$(free_port)"; grpc_port="$(free_port)"; http_port="$(free_port)"
while [ "$grpc_port" = "$api_port" ]; do grpc_port="$(free_port)"; done
while [ "$http_port" = "$api_port" ] || [ "$http_port" = "$grpc_port" ]; do http_port="$(free_port)"; done

tmp="$(mktemp -d -t xray-ui-e2e.XXXXXX)"
server_pid=""
auth_pid=""
cleanup() {
  status=$?
  for pid in "$server_pid" "$auth_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  cp "$tmp/xray.log" "$out/xray.log" 2>/dev/null || true
  cp "$tmp/xray-auth.log" "$out/xray-auth.log" 2>/dev/null || true
  rm -rf "$tmp"
  if [ "$status" != 0 ]; then say "failed (server log: $out/xray.log)"; fi
  exit "$status"
}
trap cleanup EXIT INT TERM

cat > "$tmp/xray.toml" <<TOML
[receivers.otlp]
grpc_addr = "127.0.0.1:$grpc_port"
http_addr = "127.0.0.1:$http_port"

[api]
addr = "127.0.0.1:$api_port"

[storage]
backend = "sqlite"

[storage.sqlite]
path = "$tmp/xray.db"

[pipeline]
flush_interval_ms = 200

[log]
level = "warn"
TOML

say "starting $xray_bin serve (api :$api_port, otlp http :$http_port, grpc :$grpc_port)"
# XRAY_BIN and XRAY_EXAMPLE_BIN are ours, not config keys: xray reads every
# XRAY_* variable as configuration and rejects unknown ones.
env -u XRAY_BIN -u XRAY_EXAMPLE_BIN RUST_BACKTRACE=0 "$xray_bin" serve --config "$tmp/xray.toml" >"$tmp/xray.log" 2>&1 &
server_pid=$!

api="http://127.0.0.1:$api_port"
for _ in $(seq 1 300); do
  if curl -fsS "$api/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$server_pid" 2>/dev/null || { say "xray serve exited"; cat "$tmp/xray.log" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "$api/readyz" >/dev/null || { say "xray serve did not become ready"; exit 1; }

# --- data -------------------------------------------------------------------------
say "loading data: the competitor_selection example over OTLP/gRPC, two more pipelines over OTLP/HTTP"
XRAY_EXAMPLE_BIN="$example_bin" node "$here/load-data.mjs" \
  "http://127.0.0.1:$http_port" "http://127.0.0.1:$grpc_port" "$api" "$tmp/manifest.json"

# --- a second server requiring API keys ------------------------------------------
auth_ports=()
while [ "${#auth_ports[@]}" -lt 3 ]; do
  p="$(free_port)"
  case " $api_port $grpc_port $http_port ${auth_ports[*]} " in *" $p "*) continue ;; esac
  auth_ports+=("$p")
done
auth_api_port="${auth_ports[0]}"; auth_http_port="${auth_ports[1]}"; auth_grpc_port="${auth_ports[2]}"
cat > "$tmp/auth.toml" <<TOML
[receivers.otlp]
grpc_addr = "127.0.0.1:$auth_grpc_port"
http_addr = "127.0.0.1:$auth_http_port"

[api]
addr = "127.0.0.1:$auth_api_port"

[storage.sqlite]
path = "$tmp/auth.db"

[pipeline]
flush_interval_ms = 200

[auth]
required = true

[log]
level = "warn"
TOML
auth_app_json="$(env -u XRAY_BIN -u XRAY_EXAMPLE_BIN "$xray_bin" apps create --config "$tmp/auth.toml" --name "E2E Shop" --json)"
json_field() { node -e 'let s="";process.stdin.on("data",(d)=>{s+=d}).on("end",()=>{let v=JSON.parse(s);for(const k of process.argv[1].split("."))v=v[k];console.log(v)})' "$1"; }
auth_key="$(printf '%s' "$auth_app_json" | json_field key.key)"
auth_app="$(printf '%s' "$auth_app_json" | json_field id)"
say "starting a second server with auth.required (api :$auth_api_port, app $auth_app)"
env -u XRAY_BIN -u XRAY_EXAMPLE_BIN RUST_BACKTRACE=0 "$xray_bin" serve --config "$tmp/auth.toml" >"$tmp/xray-auth.log" 2>&1 &
auth_pid=$!
auth_api="http://127.0.0.1:$auth_api_port"
for _ in $(seq 1 300); do
  if curl -fsS "$auth_api/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$auth_pid" 2>/dev/null || { say "the auth server exited"; cat "$tmp/xray-auth.log" >&2; exit 1; }
  sleep 0.2
done
start_ns="$(($(date +%s) * 1000000000))"
curl -fsS -o /dev/null -X POST -H "x-api-key: $auth_key" -H 'content-type: application/json' \
  "http://127.0.0.1:$auth_http_port/v1/traces" --data-binary @- <<JSON
{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"e2e-auth"}}]},
 "scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7",
  "name":"keyed-pipeline","startTimeUnixNano":"$start_ns","endTimeUnixNano":"$((start_ns + 40000000))",
  "attributes":[{"key":"xray.pipeline","value":{"stringValue":"keyed-pipeline"}}]}]}]}]}
JSON
for _ in $(seq 1 150); do
  if curl -fsS -H "authorization: Bearer $auth_key" "$auth_api/api/v1/executions/4bf92f3577b34da6a3ce929d0e0e4736" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
curl -fsS -H "authorization: Bearer $auth_key" "$auth_api/api/v1/executions/4bf92f3577b34da6a3ce929d0e0e4736" >/dev/null \
  || { say "the keyed run never showed up"; exit 1; }

# --- tests ------------------------------------------------------------------------
docs_img=""
if [ "${UPDATE_DOCS:-}" = 1 ]; then docs_img="$root/docs/img"; mkdir -p "$docs_img"; fi
say "running the browser tests"
XRAY_UI_URL="$api" XRAY_E2E_MANIFEST="$tmp/manifest.json" XRAY_E2E_OUT="$out" \
  XRAY_UI_AUTH_URL="$auth_api" XRAY_E2E_AUTH_KEY="$auth_key" XRAY_E2E_AUTH_APP="$auth_app" \
  XRAY_E2E_DOCS_IMG="$docs_img" CHROMIUM_BIN="$chromium_bin" \
  node --test --test-reporter=spec --test-concurrency=1 "$here/ui.test.mjs"
say "screenshots in $out"
