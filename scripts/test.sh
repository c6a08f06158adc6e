#!/usr/bin/env bash
# Prepare everything, type-check, and run the whole test suite (extra arguments go to pytest).
source "$(dirname "$0")/_env.sh"
ensure_venv
cd "$ROOT"
# Lint and format first (pyproject.toml): cheap, and a failure names the line to fix.
"$VENV/bin/ruff" check calls providers voicecall_project tests bench manage.py
"$VENV/bin/ruff" format --check calls providers voicecall_project tests bench manage.py
# Typed code is a quality bar (docs/design.md, "11. Quality bars"): a type error fails the
# script here (set -e), before the suite runs.
"$VENV/bin/python" -m mypy --config-file "$ROOT/mypy.ini" calls providers voicecall_project
set +e
"$VENV/bin/python" -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$code"
