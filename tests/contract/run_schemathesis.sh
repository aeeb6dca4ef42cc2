#!/usr/bin/env bash
# The API document against the server: Schemathesis generates requests from /api/schema/ and
# checks every answer against the document (all checks), on a DEBUG-off stack:
#   gunicorn (config.settings, DEBUG off, a generated secret key) on a free loopback port,
#   a fresh PostgreSQL database, a private Redis broker (nothing consumes it: no worker is
#   needed to answer the API), and one company with an API client whose bearer token
#   Schemathesis sends.
# It must end with zero failures. At least 1,000 generated cases: SCHEMATHESIS_MAX_EXAMPLES per
# operation (default 20) times the document's 32 operations (positive and negative) in the
# fuzzing phase, plus the examples, coverage and stateful phases (about 2,500 in all).
#
# Usage: tests/contract/run_schemathesis.sh [schemathesis run options, e.g. --include-path ...]
#   VENV=.venv                          the virtualenv with the dev dependencies
#   SCHEMATHESIS_DB_SERVER=postgres://postgres@127.0.0.1:5432   a PostgreSQL server
#   SCHEMATHESIS_DB_NAME=jobtrail_schemathesis                   dropped and recreated
#   SCHEMATHESIS_MAX_EXAMPLES=20        generated cases per operation and phase
#   SCHEMATHESIS_MAX_TIME=300           seconds before the run is stopped (and fails)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
venv=${VENV:-.venv}
py="$root/$venv/bin/python"
db_server=${SCHEMATHESIS_DB_SERVER:-postgres://postgres@127.0.0.1:5432}
db_name=${SCHEMATHESIS_DB_NAME:-jobtrail_schemathesis}
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-20}
max_time=${SCHEMATHESIS_MAX_TIME:-300}

work=$(mktemp -d "${TMPDIR:-/tmp}/jobtrail-schemathesis.XXXXXX")
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$rc" != 0 ]; then
    echo "--- gunicorn log (tail)" >&2; tail -n 60 "$work/web.log" >&2 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
web_port=$(free_port)
redis_port=$(free_port)
base="http://127.0.0.1:$web_port"

export DJANGO_SETTINGS_MODULE=config.settings
export DJANGO_DEBUG=0 JOBTRAIL_READ_DOTENV=0
DJANGO_SECRET_KEY=$("$py" -c 'import secrets; print(secrets.token_urlsafe(50))')
export DJANGO_SECRET_KEY
export DJANGO_ALLOWED_HOSTS=127.0.0.1 DJANGO_SECURE_SSL_REDIRECT=0 DJANGO_SECURE_COOKIES=0
export DATABASE_URL="$db_server/$db_name"
export CELERY_BROKER_URL="redis://127.0.0.1:$redis_port/0"
export JOBTRAIL_PUBLIC_URL="$base" JOBTRAIL_MEDIA_ROOT="$work/media"
# Thousands of requests in a few minutes from one client: the rate limits are not under test.
export JOBTRAIL_API_RATE_LIMIT=1000000/minute JOBTRAIL_AUTH_RATE_LIMIT=1000000/minute
# Webhook endpoints may point at loopback (tests/contract/hooks.py gives them one).
export JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS=1
export PYTHONUNBUFFERED=1 PROMETHEUS_MULTIPROC_DIR="$work/prometheus"

echo "=== database $db_name, broker on :$redis_port, web on :$web_port"
"$py" - <<PY
import psycopg
with psycopg.connect("$db_server/postgres", autocommit=True) as conn:
    conn.execute('DROP DATABASE IF EXISTS "$db_name" WITH (FORCE)')
    conn.execute('CREATE DATABASE "$db_name"')
PY
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  --logfile "$work/redis.log" &
pids+=($!)
"$py" manage.py migrate --noinput -v 0
password=$("$py" -c 'import secrets; print(secrets.token_urlsafe(24))')
# --password=…: a generated password may start with "-" (1 in 64), which argparse would
# take for an option after a separate --password
"$py" manage.py create_api_client "Schemathesis Co" schemathesis --password="$password" >/dev/null

# as deployed: config.gunicorn answers what gunicorn refuses itself with problem documents
"$root/$venv/bin/gunicorn" config.wsgi --config python:config.gunicorn \
  --bind "127.0.0.1:$web_port" --workers 2 --threads 4 \
  --no-control-socket >"$work/web.log" 2>&1 &
pids+=($!)
for _ in $(seq 60); do
  curl -fsS -o /dev/null "$base/api/schema/" 2>/dev/null && break
  sleep 1
done
JOBTRAIL_SCHEMATHESIS_TOKEN=$(curl -fsS -X POST "$base/api/v1/auth/token/" -H 'Content-Type: application/json' \
  -d "{\"username\": \"schemathesis\", \"password\": \"$password\"}" |
  "$py" -c 'import json, sys; print(json.load(sys.stdin)["access"])')
export JOBTRAIL_SCHEMATHESIS_TOKEN  # schemathesis.toml [auth]

echo "=== schemathesis run (all checks, $max_examples examples per operation, at most ${max_time}s)"
# Every failure is reported, and any failure fails the run.
# All phases (examples, coverage, fuzzing, stateful), every check. One worker: with two,
# Hypothesis' lambda descriptions parse source with `ast` in two threads at once, and CPython
# 3.11 can fail that with "AST constructor recursion depth mismatch" (a runtime error of the
# tool, not of the API; seen in CI on 2026-12-02).
# run from the work dir: Schemathesis keeps a cache (.schemathesis/) in the current directory
cd "$work"
SCHEMATHESIS_HOOKS="$root/tests/contract/hooks.py" timeout --signal=INT "$max_time" \
  "$root/$venv/bin/schemathesis" --config-file "$root/tests/contract/schemathesis.toml" \
  run "$base/api/schema/" \
  --url "$base" \
  --checks all \
  --max-examples "$max_examples" \
  --workers 1 \
  --seed 1 \
  --no-color --generation-database none \
  --report junit --report-dir "$work/report" \
  "$@" 2>&1 | tee "$work/schemathesis.log"
# (pipefail: a failed run fails here.) And it must have generated the cases it promises.
generated=$(grep -oE '[0-9]+ generated' "$work/schemathesis.log" | tail -1 | grep -oE '[0-9]+' || true)
min_cases=${SCHEMATHESIS_MIN_CASES:-1000}
echo "=== $generated generated test cases (at least $min_cases required)"
if [ -z "$generated" ] || [ "$generated" -lt "$min_cases" ]; then
  echo "too few generated cases: ${generated:-none} < $min_cases" >&2
  exit 1
fi
