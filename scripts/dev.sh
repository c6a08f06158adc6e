#!/usr/bin/env bash
# Prepare everything and run voicecall on the embedded default:
# SQLite, in-process channel layer, mock carrier, on http://127.0.0.1:3334.
source "$(dirname "$0")/_env.sh"
ensure_venv
cd "$ROOT"
PY="$VENV/bin/python"
"$PY" manage.py migrate --verbosity 0
"$PY" manage.py voicecall admin-user
cat <<TXT

voicecall is starting on http://127.0.0.1:3334 (mock carrier, SQLite in var/).
In another terminal, place a first call and watch it:
  .venv/bin/python manage.py voicecall call --to +15555550123 --message "Hello" --mode notify
  .venv/bin/python manage.py voicecall tail
Admin: http://127.0.0.1:3334/admin/  (user and password printed above)
API docs: http://127.0.0.1:3334/api/docs/  (after signing in to the admin)
API token for scripts: .venv/bin/python manage.py voicecall token create --name me

TXT
exec "$PY" manage.py voicecall serve "$@"
