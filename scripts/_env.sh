# Shared by scripts/dev.sh, scripts/test.sh and .ci/run: find Python 3.12, make .venv,
# install the pinned requirements (again only when requirements.txt changed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VOICECALL_VENV:-$ROOT/.venv}"

find_python() {
  local candidates=(python3.12)
  # pyenv installs 3.12 without putting it on PATH unless it is the global version.
  if command -v pyenv >/dev/null 2>&1; then
    candidates+=("$(pyenv root)"/versions/3.12*/bin/python3.12)
  fi
  candidates+=("$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12)
  local c
  for c in "${candidates[@]}"; do
    if [ -n "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
      echo "$c"; return 0
    fi
  done
  echo "voicecall needs Python 3.12 (python3.12 was not found)" >&2
  return 1
}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$(find_python)" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
  fi
  local stamp="$VENV/.requirements.sha256"
  local want; want="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.txt"
    echo "$want" > "$stamp"
  fi
}

# requirements-dev.txt: tools only scripts/api_contract.sh needs (schemathesis), installed on
# demand so the suite's venv stays as requirements.txt pins it.
ensure_dev_requirements() {
  local stamp="$VENV/.requirements-dev.sha256"
  local want; want="$(sha256sum "$ROOT/requirements-dev.txt" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements-dev.txt"
    echo "$want" > "$stamp"
  fi
}
