#!/usr/bin/env bash
# Creates (or refreshes) dev/bench/.venv-phoenix with the pinned Arize Phoenix
# of requirements-phoenix.txt; reinstalls only when that file changes.
# Prints the venv path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-phoenix"
req="$here/requirements-phoenix.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/phoenix" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "phoenix-venv.sh: installing $(grep -v '^#' "$req" | xargs) into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  echo "$want" > "$stamp"
fi
echo "$venv"
