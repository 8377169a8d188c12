#!/usr/bin/env bash
# bench/replicate.sh: how long does replicate mode take to get a target in
# sync, next to a copy, and how long are the source's writes refused at the
# switch, in each mode?
#
#   bench/replicate.sh [--rows N] [--keep]
#
# On the two PostgreSQL 17 clusters of .ci/pg17.sh (started when they are
# not running), as Supabase's non-superuser `postgres`: generates one source
# (bench/schema.sql + bench/generate.sql, N rows, default 400,000) and a
# clone of it, then in one run
#   1. times `cutover data` in copy mode and in replicate mode (until in
#      sync), each into an empty target that has the schema;
#   2. with a steady writer on the replicated source, runs `validate` and
#      `cutover` (gate answered by a fake GitHub API on 127.0.0.1) and reports
#      the write freeze from cutover's ledger and from the writer's side;
#   3. times one copy-mode `validate`, then the copy-mode `cutover`'s
#      verified freeze, and their ratio;
# and checks every target against its source (counts, row checksums,
# indexes/constraints/triggers). See bench/README.md.
#
# Environment:
#   BENCH_PG17_ENV      file with CUTOVER_TEST_PG17_SOURCE_URL/_TARGET_URL
#                       (default /tmp/cutover-pg17/env; variables already set win)
#   CUTOVER_BIN         cutover binary (default target/release/cutover, built
#                       with `cargo build --release` when missing)
#   BENCH_WRITERS       writer sessions on the replicated source (default 2)
#   BENCH_WRITE_RATE    writes a second per writer (default 20)
#   BENCH_STEP_TIMEOUT  seconds any one cutover command may take (default 1800)
#   BENCH_STRICT        1: also fail when replicate mode's database freeze
#                       is 5 s or more (otherwise only reported)
#
# Exit status: 0 when every phase passed and every target equals its source;
# 1 otherwise; 2 for bad usage.

set -euo pipefail

usage() {
  sed -n '2,34p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

ROWS=400000
KEEP=0
while (($#)); do
  case $1 in
    --rows) [[ $# -ge 2 ]] || { echo "--rows needs a number" >&2; exit 2; }; ROWS=$2; shift 2 ;;
    --rows=*) ROWS=${1#--rows=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (usage: bench/replicate.sh [--rows N] [--keep])" >&2; exit 2 ;;
  esac
done
if ! [[ $ROWS =~ ^[0-9]+$ ]] || ((ROWS < 100)); then
  echo "--rows must be a whole number of at least 100 (got '$ROWS')" >&2
  exit 2
fi

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
cd "$REPO_DIR"

CUTOVER_BIN=${CUTOVER_BIN:-target/release/cutover}
BENCH_WRITERS=${BENCH_WRITERS:-2}
BENCH_WRITE_RATE=${BENCH_WRITE_RATE:-20}
BENCH_STEP_TIMEOUT=${BENCH_STEP_TIMEOUT:-1800}
BENCH_STRICT=${BENCH_STRICT:-0}
FREEZE_GOAL=5        # seconds: replicate mode's database freeze should stay under this
WARMUP=5             # seconds the writers write before `validate`
for v in BENCH_WRITERS BENCH_WRITE_RATE BENCH_STEP_TIMEOUT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive whole number (got '${!v}')" >&2; exit 2; }
done

for tool in psql python3 bc awk timeout mkfifo; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required but not installed" >&2; exit 1; }
done

# --- helpers ------------------------------------------------------------------
export PGOPTIONS='-c client_min_messages=warning'  # psql only: no "already exists, skipping"
pq() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
pqa() { psql -X -q -v ON_ERROR_STOP=1 -At -F'|' "$@"; }
now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }
fmt1() { awk -v x="$1" 'BEGIN { printf "%.1f", x }'; }
fmt2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
ms_s() { awk -v x="$1" 'BEGIN { printf "%.2f", x / 1000 }'; }  # milliseconds → seconds
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }
say() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }

# --- the clusters -------------------------------------------------------------
BENCH_PG17_ENV=${BENCH_PG17_ENV:-/tmp/cutover-pg17/env}
if [[ -z ${CUTOVER_TEST_PG17_SOURCE_URL:-} || -z ${CUTOVER_TEST_PG17_TARGET_URL:-} ]]; then
  if [[ ! -f $BENCH_PG17_ENV ]] || ! bash .ci/pg17.sh status 2>/dev/null; then
    say "starting the PostgreSQL 17 clusters (.ci/pg17.sh)"
    bash .ci/pg17.sh | sed 's/^/    /'
  fi
  # shellcheck disable=SC1090
  . "$BENCH_PG17_ENV"
fi
# host:port of an admin URL (postgres://supabase_admin@HOST:PORT/db?...).
host_port() { local r=${1#*://}; r=${r#*@}; echo "${r%%[/?]*}"; }
SRC_HP=$(host_port "$CUTOVER_TEST_PG17_SOURCE_URL")
TGT_HP=$(host_port "$CUTOVER_TEST_PG17_TARGET_URL")
SRC_HOST=${SRC_HP%:*} SRC_PORT=${SRC_HP##*:}
# URL of database $2 on cluster host:port $1 as role $3.
url() { printf 'postgres://%s@%s/%s' "$3" "$1" "$2"; }

# Two sources (one generated, one a clone of it: each cutover freezes its own
# source for good) and two targets, one pair per mode.
S_COPY=bench_repl_src_copy S_REPL=bench_repl_src_repl
T_COPY=bench_repl_tgt_copy T_REPL=bench_repl_tgt_repl
declare -A HP=([$S_COPY]=$SRC_HP [$S_REPL]=$SRC_HP [$T_COPY]=$TGT_HP [$T_REPL]=$TGT_HP)
as_admin() { url "${HP[$1]}" "$1" supabase_admin; }
as_pg() { url "${HP[$1]}" "$1" postgres; }
SRC_ADMIN=$(url "$SRC_HP" postgres supabase_admin)
TGT_ADMIN=$(url "$TGT_HP" postgres supabase_admin)

TABLES=(public.customers public.sales_transactions public.invoices public.whatsapp_message_logs)

# --- cleanup ------------------------------------------------------------------
# A target database cannot be dropped while it holds a subscription, nor a
# source database while a replication slot uses it: subscriptions are
# detached from their slots and dropped, slots dropped, then the databases,
# then the replication roles the targets' ledgers name.
drop_all() {
  local roles=() db sub slot pid r
  for db in "$T_COPY" "$T_REPL"; do
    pqa "$TGT_ADMIN" -c "select 1 from pg_database where datname = '$db'" | grep -q 1 || continue
    mapfile -t -O "${#roles[@]}" roles < <(pqa "$(as_admin "$db")" \
      -c "select role_name from cutover.replications" 2>/dev/null || true)
    for sub in $(pqa "$(as_admin "$db")" -c "select subname from pg_subscription
                   where subdbid = (select oid from pg_database where datname = current_database())"); do
      pq "$(as_admin "$db")" -c "alter subscription \"$sub\" disable" \
        -c "alter subscription \"$sub\" set (slot_name = none)" -c "drop subscription \"$sub\"" || true
    done
    pq "$TGT_ADMIN" -c "drop database if exists $db with (force)" || true
  done
  for db in "$S_COPY" "$S_REPL"; do
    pqa "$SRC_ADMIN" -c "select slot_name, coalesce(active_pid, 0) from pg_replication_slots where database = '$db'" |
      while IFS='|' read -r slot pid; do
        ((pid)) && pq "$SRC_ADMIN" -c "select pg_terminate_backend($pid)" >/dev/null || true
        sleep 0.2
        pq "$SRC_ADMIN" -c "select pg_drop_replication_slot('$slot')" >/dev/null || true
      done
    pq "$SRC_ADMIN" -c "drop database if exists $db with (force)" || true
  done
  for r in "${roles[@]}"; do
    [[ -n $r ]] && pq "$SRC_ADMIN" -c "drop role if exists \"$r\"" || true
  done
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cutover-bench-repl.XXXXXX")
GH_PID=
cleanup() {
  local pids
  touch "$WORK/writers.stop" 2>/dev/null || true
  pids=$(jobs -p)
  [[ -n $pids ]] && kill $pids 2>/dev/null || true
  wait 2>/dev/null || true
  if ((KEEP)); then
    printf '\n--keep: databases %s, %s (%s) and %s, %s (%s) kept; logs in %s\n' \
      "$S_COPY" "$S_REPL" "$SRC_HP" "$T_COPY" "$T_REPL" "$TGT_HP" "$WORK"
  else
    drop_all >/dev/null 2>&1 || true
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- cutover binary -----------------------------------------------------------
if [[ ! -x $CUTOVER_BIN ]]; then
  if [[ $CUTOVER_BIN == target/release/cutover ]] && command -v cargo >/dev/null; then
    say "building cutover (cargo build --release)"
    cargo build --release || true
  fi
  [[ -x $CUTOVER_BIN ]] || { echo "bench: no cutover binary at $CUTOVER_BIN (set CUTOVER_BIN)" >&2; exit 1; }
fi
CUTOVER_BIN=$(cd "$(dirname "$CUTOVER_BIN")" && pwd)/$(basename "$CUTOVER_BIN")

# --- databases and data -------------------------------------------------------
N_CUSTOMERS=$((ROWS * 5 / 100))
N_SALES=$((ROWS * 45 / 100))
N_INVOICES=$((ROWS * 25 / 100))
N_LOGS=$((ROWS - N_CUSTOMERS - N_SALES - N_INVOICES))

# As the tests' SupaDb: made by supabase_admin, the Supabase-like bootstrap,
# and what Supabase's `postgres` role has on it.
supabase_db() {
  pq "$(as_admin "$1")" -f tests/fixtures/supabase_bootstrap.sql >/dev/null
  pq "$(as_admin "$1")" >/dev/null <<SQL
grant all on database "$1" to postgres;
grant all on schema public to postgres;
grant usage, create on schema extensions to postgres;
grant all on schema supabase_migrations to postgres;
grant usage on schema auth, storage, graphql_public to postgres;
grant all on all tables in schema auth, storage to postgres;
alter default privileges for role postgres in schema public
  grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on sequences to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant execute on functions to anon, authenticated, service_role;
SQL
}

say "recreating $S_COPY, $S_REPL on $SRC_HP and $T_COPY, $T_REPL on $TGT_HP"
drop_all
pq "$SRC_ADMIN" -c "create database $S_COPY"
pq "$TGT_ADMIN" -c "create database $T_COPY" -c "create database $T_REPL"
for db in "$S_COPY" "$T_COPY" "$T_REPL"; do
  supabase_db "$db"
  pq "$(as_pg "$db")" -f bench/schema.sql >/dev/null  # as postgres: it owns the tables
done

say "generating $ROWS rows in $S_COPY (as postgres)"
t0=$(now)
gen() {
  pq "$(as_pg "$S_COPY")" -v n_customers="$N_CUSTOMERS" -v n_sales="$N_SALES" -v n_invoices="$N_INVOICES" \
    -v n_logs="$N_LOGS" -v part_a="$1" -v part_b="$2" -v part_c="$3" -f bench/generate.sql >/dev/null
}
gen true false false &
gen false true false &
wait -n
wait -n
gen false false true
pq "$SRC_ADMIN" -c "create database $S_REPL template $S_COPY"
supabase_db "$S_REPL"  # idempotent; sets the per-database search_path a clone does not inherit
note "generated and cloned to $S_REPL in $(fmt1 "$(elapsed "$t0" "$(now)")") s (not part of any timing)"

say "dataset"
pqa "$(as_admin "$S_COPY")" -c "select pg_size_pretty(pg_database_size(current_database())), pg_database_size(current_database())" |
  while IFS='|' read -r pretty bytes; do note "each source: $pretty ($bytes bytes, pg_database_size), $ROWS rows"; done
printf '    %-32s %12s %12s %12s\n' table rows table+toast indexes
for t in "${TABLES[@]}"; do
  pqa "$(as_admin "$S_COPY")" -c "select (select count(*) from $t), pg_size_pretty(pg_table_size('$t')), pg_size_pretty(pg_indexes_size('$t'))" |
    while IFS='|' read -r n ts is; do printf '    %-32s %12s %12s %12s\n' "$t" "$n" "$ts" "$is"; done
done

# --- verification -------------------------------------------------------------
# Row counts and an order-independent checksum of every row's text, plus the
# indexes, constraints and triggers of the four tables (bench/data.sh's, with
# cutover's freeze trigger left out: it belongs to the frozen source only).
data_sql() {
  local i=0 t
  echo "set timezone = 'UTC';"
  echo "select t, n, s from ("
  for t in "${TABLES[@]}"; do
    ((i)) && echo "union all"
    echo "select $i as o, '$t' as t, count(*) as n,"
    echo "  coalesce(sum(('x' || substr(md5(r::text), 1, 16))::bit(64)::bigint::numeric), 0) as s"
    echo "from $t as r"
    i=$((i + 1))
  done
  echo ") as x order by o;"
}
schema_sql() {
  local list
  list=$(printf "to_regclass('%s'), " "${TABLES[@]}")
  cat <<SQL
with rels as (select unnest(array[${list%, }])::oid as oid)
select line from (
  select 'index ' || pg_get_indexdef(i.indexrelid) || case when i.indisvalid then '' else ' (INVALID)' end as line
  from pg_index i where i.indrelid in (select oid from rels)
  union all
  select 'constraint ' || c.conrelid::regclass::text || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
         || case when c.convalidated then '' else ' (NOT VALIDATED)' end
  from pg_constraint c where c.conrelid in (select oid from rels)
  union all
  select 'trigger ' || t.tgrelid::regclass::text || ' ' || t.tgname || ' enabled=' || t.tgenabled::text
  from pg_trigger t where not t.tgisinternal and t.tgname <> 'cutover_write_freeze'
    and t.tgrelid in (select oid from rels)
) as x order by line collate "C";
SQL
}
DATA_SQL=$(data_sql)
SCHEMA_SQL=$(schema_sql)

say "checksumming both sources (also warms their caches)"
t0=$(now)
for db in "$S_COPY" "$S_REPL"; do
  pqa "$(as_admin "$db")" -c "$DATA_SQL" >"$WORK/$db.data"
done
cmp -s "$WORK/$S_COPY.data" "$WORK/$S_REPL.data" || { echo "bench: the clone differs from the source" >&2; exit 1; }
note "identical; checksums in $(fmt1 "$(elapsed "$t0" "$(now)")") s"

# Compares target $2 with source $1 (label $3); sets SAME[$3] to yes / no (...).
declare -A SAME
compare() {
  local s=$1 t=$2 label=$3 bad=()
  pqa "$(as_admin "$s")" -c "$DATA_SQL" >"$WORK/$label.source.data"
  pqa "$(as_admin "$s")" -c "$SCHEMA_SQL" >"$WORK/$label.source.schema"
  if ! pqa "$(as_admin "$t")" -c "$DATA_SQL" >"$WORK/$label.target.data" 2>"$WORK/$label.err" ||
    ! pqa "$(as_admin "$t")" -c "$SCHEMA_SQL" >"$WORK/$label.target.schema" 2>>"$WORK/$label.err"; then
    SAME[$label]="no (cannot read the target)"
    sed 's/^/      /' "$WORK/$label.err"
    note "target equals source: ${SAME[$label]}"
    return
  fi
  if ! cmp -s "$WORK/$label.source.data" "$WORK/$label.target.data"; then
    bad+=("rows")
    note "rows differ (table|count|checksum), source < > target:"
    diff "$WORK/$label.source.data" "$WORK/$label.target.data" | sed 's/^/      /' || true
  fi
  if ! cmp -s "$WORK/$label.source.schema" "$WORK/$label.target.schema"; then
    bad+=("indexes/constraints")
    note "indexes/constraints/triggers differ, source < > target:"
    diff "$WORK/$label.source.schema" "$WORK/$label.target.schema" | sed 's/^/      /' || true
  fi
  if ((${#bad[@]})); then SAME[$label]="no (${bad[*]})"; else SAME[$label]=yes; fi
  note "$t equals $s: ${SAME[$label]} ($(awk -F'|' '{ n += $2 } END { print n }' "$WORK/$label.source.data") rows)"
}

# --- manifests, the fake GitHub, running cutover ------------------------------
mkdir -p "$WORK/copy/migrations" "$WORK/replicate/migrations" "$WORK/gh"
cat >"$WORK/copy/cutover.toml" <<TOML
# bench/replicate.sh, copy mode: the four tables of bench/schema.sql.
[project]
name = "bench-copy"
migrations_dir = "migrations"  # empty: the schema is applied by the script

[data]
mode = "copy"
parallel = 2

[gate]
environment = "production"
TOML
cat >"$WORK/replicate/cutover.toml" <<TOML
# bench/replicate.sh, replicate mode: the same tables, server to server.
[project]
name = "bench-replicate"
migrations_dir = "migrations"

[data]
mode = "replicate"
parallel = 2
replication_host = "$SRC_HOST"
replication_port = $SRC_PORT
sync_timeout_minutes = $(((BENCH_STEP_TIMEOUT + 59) / 60))

[gate]
environment = "production"
TOML
echo '{"ref": "refs/tags/v1.2.0", "repository": {"full_name": "acme/ops-portal"}}' >"$WORK/gh/event.json"
: >"$WORK/gh/output.txt"

# A fake GitHub API for run 4242 of acme/ops-portal, answering with the JSON
# shapes of tests/fake_github/mod.rs: the production environment and its
# required reviewers, the run's approval, the run, a deployment and its
# statuses. Loopback only; it shuts itself down after its lifetime.
cat >"$WORK/fake_github.py" <<'PY'
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port_file, lifetime = sys.argv[1], float(sys.argv[2])
REPO = "/repos/acme/ops-portal"
SHA = "0123456789abcdef0123456789abcdef01234567"
STAMP = "2025-01-22T19:33:08Z"

def user(login):
    return {"login": login, "id": 1, "node_id": "MDQ6VXNlcjE=", "type": "User", "site_admin": False}

ENV_REF = {"id": 161088068, "node_id": "MDExOkVudmlyb25tZW50MTYxMDg4MDY4", "name": "production",
           "url": "https://api.github.com/repos/acme/ops-portal/environments/production",
           "created_at": "2020-11-23T22:00:40Z", "updated_at": "2020-11-23T22:00:40Z"}
ENVIRONMENT = dict(ENV_REF,
    html_url="https://github.com/acme/ops-portal/deployments/activity_log",
    protection_rules=[{"id": 3755, "node_id": "MDQ6R2F0ZTM3NTU=", "prevent_self_review": False,
                       "type": "required_reviewers",
                       "reviewers": [{"type": "User", "reviewer": user("octocat")},
                                     {"type": "Team", "reviewer": {"id": 1, "name": "Release Managers",
                                                                   "slug": "release-managers"}}]}],
    deployment_branch_policy={"protected_branches": False, "custom_branch_policies": True})
APPROVALS = [{"state": "approved", "comment": "Go", "user": user("octocat"),
              "environments": [dict(ENV_REF, html_url="https://github.com/acme/ops-portal/deployments/activity_log?environments_filter=production")]}]
RUN = {"id": 4242, "name": "release", "node_id": "MDEyOldvcmtmbG93IFJ1bjI2OTI4OQ==",
       "head_branch": "v1.2.0", "head_sha": SHA, "path": ".github/workflows/release.yml@v1.2.0",
       "run_number": 7, "event": "push", "status": "in_progress", "conclusion": None,
       "workflow_id": 159038, "url": "https://api.github.com/repos/acme/ops-portal/actions/runs/4242",
       "html_url": "https://github.com/acme/ops-portal/actions/runs/4242",
       "created_at": STAMP, "updated_at": STAMP, "actor": user("release-manager"),
       "triggering_actor": user("release-manager"), "run_attempt": 1}
DEPLOYMENT = {"url": "https://api.github.com/repos/acme/ops-portal/deployments/42", "id": 42,
              "node_id": "MDEwOkRlcGxveW1lbnQx", "sha": SHA, "ref": SHA, "task": "deploy", "payload": {},
              "environment": "production", "description": "cutover", "creator": user("github-actions"),
              "created_at": STAMP, "updated_at": STAMP,
              "statuses_url": "https://api.github.com/repos/acme/ops-portal/deployments/42/statuses",
              "repository_url": "https://api.github.com/repos/acme/ops-portal",
              "transient_environment": False, "production_environment": True}

def status(body):
    return {"url": "https://api.github.com/repos/acme/ops-portal/deployments/42/statuses/1", "id": 1,
            "node_id": "MDE2OkRlcGxveW1lbnRTdGF0dXMx", "state": body.get("state"),
            "creator": user("github-actions"), "description": body.get("description"),
            "environment": "production", "target_url": body.get("log_url"),
            "created_at": STAMP, "updated_at": STAMP,
            "deployment_url": "https://api.github.com/repos/acme/ops-portal/deployments/42",
            "repository_url": "https://api.github.com/repos/acme/ops-portal",
            "environment_url": body.get("environment_url"), "log_url": body.get("log_url")}

class Handler(BaseHTTPRequestHandler):
    def answer(self, code, value):
        data = json.dumps(value).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        routes = {REPO + "/environments/production": ENVIRONMENT,
                  REPO + "/actions/runs/4242/approvals": APPROVALS,
                  REPO + "/actions/runs/4242": RUN}
        if path in routes:
            self.answer(200, routes[path])
        else:
            self.answer(404, {"message": "Not Found"})

    def do_POST(self):
        path = self.path.split("?")[0]
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = {}
        if path == REPO + "/deployments":
            self.answer(201, DEPLOYMENT)
        elif path == REPO + "/deployments/42/statuses":
            self.answer(201, status(body))
        else:
            self.answer(404, {"message": "Not Found"})

    def log_message(self, fmt, *args):
        sys.stderr.write("fake github: " + (fmt % args) + "\n")

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Timer(lifetime, server.shutdown).start()
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.replace(port_file + ".tmp", port_file)
server.serve_forever()
PY

GH_URL=
start_fake_github() {
  local i
  rm -f "$WORK/gh.port"
  python3 "$WORK/fake_github.py" "$WORK/gh.port" "$((BENCH_STEP_TIMEOUT + 60))" 2>>"$WORK/fake_github.log" &
  GH_PID=$!
  for ((i = 0; i < 100; i++)); do
    [[ -s $WORK/gh.port ]] && break
    sleep 0.1
  done
  [[ -s $WORK/gh.port ]] || { echo "bench: the fake GitHub API did not start" >&2; return 1; }
  GH_URL="http://127.0.0.1:$(<"$WORK/gh.port")"
}
stop_fake_github() {
  [[ -n $GH_PID ]] && kill "$GH_PID" 2>/dev/null && wait "$GH_PID" 2>/dev/null || true
  GH_PID=
}

# run_cutover LABEL MODE PHASE SOURCE TARGET: one cutover command as the
# action runs it (GITHUB_* of tests/common ActionsFiles::github_env), as
# `postgres`, bounded by BENCH_STEP_TIMEOUT; output in $WORK/LABEL.log, the
# summary in $WORK/LABEL.md, the JSON report in $WORK/LABEL.json. Sets
# TOOK[LABEL] (seconds) and RC[LABEL].
declare -A TOOK RC
run_cutover() {
  local label=$1 mode=$2 phase=$3 s=$4 t=$5 t0 t1 rc=0
  : >"$WORK/$label.md"
  t0=$(now)
  env GITHUB_ACTIONS=true GITHUB_STEP_SUMMARY="$WORK/$label.md" GITHUB_OUTPUT="$WORK/gh/output.txt" \
    GITHUB_EVENT_PATH="$WORK/gh/event.json" GITHUB_WORKSPACE="$WORK/gh" \
    GITHUB_REPOSITORY=acme/ops-portal GITHUB_RUN_ID=4242 \
    GITHUB_SHA=0123456789abcdef0123456789abcdef01234567 GITHUB_REF=refs/tags/v1.2.0 \
    GITHUB_ACTOR=release-manager GITHUB_SERVER_URL=https://github.com \
    GITHUB_API_URL="${GH_URL:-http://127.0.0.1:9}" \
    timeout -k 10 "$BENCH_STEP_TIMEOUT" "$CUTOVER_BIN" "$phase" \
    --manifest "$WORK/$mode/cutover.toml" \
    --source-db-url "$(as_pg "$s")" --target-db-url "$(as_pg "$t")" \
    --github-token ghs_BenchGateToken0123456789 \
    --report-file "$WORK/$label.json" --summary-file "$WORK/$label.md" \
    >"$WORK/$label.log" 2>&1 || rc=$?
  t1=$(now)
  TOOK[$label]=$(elapsed "$t0" "$t1")
  RC[$label]=$rc
  if ((rc == 0)); then
    note "$phase ($mode): $(fmt2 "${TOOK[$label]}") s"
  else
    note "$phase ($mode): FAILED after $(fmt1 "${TOOK[$label]}") s (exit status $rc$( ((rc == 124)) && echo ", timed out")); its output:"
    tail -n 40 "$WORK/$label.log" | sed 's/^/      | /'
    FAILED+=("$label")
  fi
  return "$rc"
}
FAILED=()

# The summary's "Write freeze" table, as cutover wrote it.
show_freeze_table() {
  awk '/^#+ Write freeze/ { on = 1 } on && /^\|/ { print "      " $0; seen = 1; next } on && seen && !/^\|/ { exit }' "$1"
}
# The write-freeze-timing step of the target's ledger: lag|lock|fence|verify|sequences|frontend|total (ms).
freeze_ms() {
  pqa "$(as_admin "$1")" -c "select coalesce(detail->>'lag_before_ms', ''), detail->>'lock_ms', detail->>'fence_ms',
      detail->>'verify_ms', detail->>'sequences_ms', detail->>'frontend_ms', detail->>'total_ms'
    from cutover.steps where phase = 'cutover' and step = 'write-freeze-timing' and detail ? 'total_ms'
    order by id desc limit 1"
}

checkpoint() { pq "$SRC_ADMIN" -c checkpoint; pq "$TGT_ADMIN" -c checkpoint; }

# --- data: copy, then replicate ------------------------------------------------
say "cutover data, copy mode: $S_COPY → $T_COPY (through the runner)"
checkpoint
run_cutover copy_data copy data "$S_COPY" "$T_COPY" || true
compare "$S_COPY" "$T_COPY" copy_data

say "cutover data, replicate mode: $S_REPL → $T_REPL (server to server, until in sync)"
checkpoint
if run_cutover repl_data replicate data "$S_REPL" "$T_REPL"; then
  IFS='|' read -r SYNC_MS LAG_MS < <(pqa "$(as_admin "$T_REPL")" \
    -c "select detail->>'sync_ms', detail->>'lag_ms' from cutover.replications order by id desc limit 1")
  note "initial sync (subscription created → every table ready) $(ms_s "$SYNC_MS") s; then the deferred indexes rebuilt and a fence's round trip ($LAG_MS ms)"
  grep -E 'Initial sync done|indexes built|Target follows' "$WORK/repl_data.md" | sed 's/^/      | /' || true
fi
# No writer yet: the target must equal its source already.
compare "$S_REPL" "$T_REPL" repl_data

# --- copy mode: one validate, then the verified freeze ------------------------
say "copy mode: validate, then cutover (no writer: the source is unchanged since the copy)"
start_fake_github
checkpoint
run_cutover copy_validate copy validate "$S_COPY" "$T_COPY" || true
if run_cutover copy_cutover copy cutover "$S_COPY" "$T_COPY"; then
  show_freeze_table "$WORK/copy_cutover.md"
  IFS='|' read -r _ C_LOCK _ C_VERIFY C_SEQ C_FRONT C_TOTAL < <(freeze_ms "$T_COPY")
fi
stop_fake_github
compare "$S_COPY" "$T_COPY" copy_cutover

# --- replicate mode with writers: validate, then cutover ----------------------
# Each writer is one psql session on the replicated source, as `postgres`
# (the freeze refuses every role alike), writing BENCH_WRITE_RATE times a
# second: a sale with its invoice, a message, an invoice paid, a customer's
# credit changed, and a transaction that holds its rows 20 ms across a new
# customer, a voided sale and a message. Invoice numbers are the writer's
# own: the schema's default, lpad(nextval, 6), truncates past 999,999 and
# repeats one number from 4,000,000 rows on. Every write is logged with when
# it was sent, when its answer came and whether it was acknowledged, refused
# by the freeze or failed otherwise. It stops at $WORK/writers.stop, or
# after its lifetime.
writer_sql() {
  local w=$1 n=$2 k=$((1 + (n * 7919 + w * 104729) % N_CUSTOMERS)) tag="bench writer $1-$2"
  case $((n % 5)) in
    0) echo "with t as (insert into public.sales_transactions (customer_id, transaction_type, transaction_date, sku, quantity, amount, gst_rate)
           values ($k, 'sale', current_date, 'SKU-W$w', $((1 + n % 12)), $((n % 5000)).50, 18) returning id, customer_id, total_amount)
         insert into public.invoices (invoice_number, transaction_id, customer_id, line_items, subtotal, tax_amount, total_amount)
         select 'INV-W$w-$n', id, customer_id, '[{\"sku\": \"SKU-W$w\"}]', total_amount, 0, total_amount from t;" ;;
    1) echo "insert into public.whatsapp_message_logs (customer_id, message_type, phone_number, message_content, status)
         values ($k, 'manual', '+919000000000', '$tag', 'queued');" ;;
    2) echo "update public.invoices set status = 'paid' where id = md5('invoice' || $((1 + (n * 6151 + w) % N_INVOICES)))::uuid;" ;;
    3) echo "update public.customers set credit_limit = credit_limit + 1 where id = $k;" ;;
    4) echo "begin;
         insert into public.customers (client_name, branch) values ('$tag', 'Bench');
         update public.sales_transactions set status = 'void' where id = $((1 + (n * 2654435761 + w) % N_SALES));
         do \$\$ begin perform pg_sleep(0.02); end \$\$;
         insert into public.whatsapp_message_logs (customer_id, message_type, phone_number, message_content)
           values ($k, 'payment_reminder', '+919000000001', '$tag');
         commit;" ;;
  esac
}
usec() { local t=${EPOCHREALTIME/[.,]/}; printf -v "$1" '%s' "$t"; }
writer() {
  local w=$1 lifetime=$2 dir=$WORK/writer-$1 n=0 start end t0 t1 line out status pid in from next d
  mkdir -p "$dir"
  mkfifo "$dir/in" "$dir/out"
  psql -X -q -v ON_ERROR_STOP=0 "$(as_pg "$S_REPL")?application_name=bench_writer_$w" \
    <"$dir/in" >"$dir/out" 2>&1 &
  pid=$!
  exec {in}>"$dir/in" {from}<"$dir/out"
  usec start
  end=$((start + lifetime * 1000000))
  while [[ ! -e $WORK/writers.stop ]]; do
    usec t0
    ((t0 < end)) || break
    n=$((n + 1))
    printf '%s\n\\echo __w_done__\n' "$(writer_sql "$w" "$n")" >&"$in"
    out= status=
    while IFS= read -r line <&"$from"; do
      if [[ $line == __w_done__ ]]; then status=done; break; fi
      out+="$line"$'\n'
    done
    usec t1
    if [[ $status != done ]]; then status=lost  # the session died
    elif [[ $out == *"is frozen"* ]]; then status=refused
    elif [[ $out == *ERROR* || $out == *FATAL* ]]; then status=error
    else status=ok; fi
    printf '%s %s %s %s %s\n' "$w" "$n" "$t0" "$t1" "$status" >>"$WORK/writes.log"
    [[ $status == ok || $status == refused ]] || printf 'writer %s, write %s: %s\n%s' "$w" "$n" "$status" "$out" >>"$WORK/writer-errors.log"
    [[ $status == lost ]] && break
    next=$((start + n * 1000000 / BENCH_WRITE_RATE))
    usec t1
    d=$((next - t1))
    ((d > 0)) && sleep "$((d / 1000000)).$(printf '%06d' $((d % 1000000)))"
  done
  exec {in}>&- {from}<&-
  wait "$pid" || true
}

say "replicate mode: $BENCH_WRITERS writers × $BENCH_WRITE_RATE writes/s on $S_REPL, then validate and cutover"
: >"$WORK/writes.log"
rm -f "$WORK/writers.stop"
WRITER_PIDS=()
for ((w = 1; w <= BENCH_WRITERS; w++)); do
  writer "$w" "$((3 * BENCH_STEP_TIMEOUT + 120))" </dev/null &
  WRITER_PIDS+=($!)
done
sleep "$WARMUP"
start_fake_github
run_cutover repl_validate replicate validate "$S_REPL" "$T_REPL" || true
grep -E 'Compared at a replication fence' "$WORK/repl_validate.md" | sed 's/^/      | /' || true
sleep 2
usec CUT_START_US
if run_cutover repl_cutover replicate cutover "$S_REPL" "$T_REPL"; then
  show_freeze_table "$WORK/repl_cutover.md"
  IFS='|' read -r R_LAG R_LOCK R_FENCE R_VERIFY R_SEQ R_FRONT R_TOTAL < <(freeze_ms "$T_REPL")
fi
usec CUT_END_US
stop_fake_github
sleep 1  # the writers meet the frozen source a moment longer, then stop
touch "$WORK/writers.stop"
for pid in "${WRITER_PIDS[@]}"; do wait "$pid" || true; done

# The writers' view, in microseconds since the epoch.
read -r W_OK W_REFUSED W_OTHER FIRST_REFUSED FIRST_REFUSED_ANSWER LAST_OK LATE_OK < <(awk '
  $5 == "ok" { ok++; if ($4 > last_ok) last_ok = $4 }
  $5 == "refused" { ref++; if (first == "" || $3 < first) { first = $3; first_answer = $4 } }
  $5 != "ok" && $5 != "refused" { other++ }
  { rows[NR] = $0 }
  END {
    # an acknowledged write sent after a refusal was answered would be a hole in the freeze
    late = 0
    for (i = 1; i <= NR; i++) { split(rows[i], f, " "); if (f[5] == "ok" && first != "" && f[3] > first_answer) late++ }
    printf "%d %d %d %s %s %s %d\n", ok, ref, other, (first == "" ? 0 : first), (first_answer == "" ? 0 : first_answer), (last_ok == "" ? 0 : last_ok), late
  }' "$WORK/writes.log")
rel() { awk -v a="$1" -v b="$CUT_START_US" 'BEGIN { printf "%+.2f", (a - b) / 1e6 }'; }
note "writes acknowledged $W_OK, refused by the freeze $W_REFUSED, failed otherwise $W_OTHER"
WRITER_FREEZE=n/a
if ((FIRST_REFUSED > 0)); then
  WRITER_FREEZE=$(awk -v a="$FIRST_REFUSED" -v b="$CUT_END_US" 'BEGIN { printf "%.2f", (b - a) / 1e6 }')
  note "from cutover's start: last acknowledged write answered at $(rel "$LAST_OK") s, first refused write sent at $(rel "$FIRST_REFUSED") s (refused at $(rel "$FIRST_REFUSED_ANSWER") s), cutover exited at $(rel "$CUT_END_US") s"
  note "writer's side: $WRITER_FREEZE s from the first refused write to the end of the cutover process"
fi
if ((W_OTHER)); then
  note "writes that failed for another reason than the freeze:"
  head -n 20 "$WORK/writer-errors.log" | sed 's/^/      | /'
fi
((LATE_OK == 0)) || note "$LATE_OK writes were acknowledged after a refusal: the freeze let writes through"
compare "$S_REPL" "$T_REPL" repl_cutover

# --- results ------------------------------------------------------------------
say "results: $ROWS rows, $(pqa "$(as_admin "$S_COPY")" -c "select pg_size_pretty(pg_database_size(current_database()))") per source, PostgreSQL $(pqa "$SRC_ADMIN" -c "show server_version" | cut -d' ' -f1), $(nproc) cores"
STATUS=0
((${#FAILED[@]})) && STATUS=1
show() { [[ ${RC[$1]:-1} == 0 ]] && fmt2 "${TOOK[$1]}" || echo "n/a"; }
echo "1. data into an empty target"
note "copy mode          $(show copy_data) s"
note "replicate mode     $(show repl_data) s until in sync$([[ ${RC[repl_data]:-1} == 0 ]] && echo " (initial sync $(ms_s "$SYNC_MS") s)")"
if [[ ${RC[copy_data]:-1} == 0 && ${RC[repl_data]:-1} == 0 ]]; then
  note "replicate / copy   $(ratio "${TOOK[repl_data]}" "${TOOK[copy_data]}")×"
fi
echo "2. replicate mode's write freeze, $BENCH_WRITERS writers × $BENCH_WRITE_RATE writes/s"
if [[ ${RC[repl_cutover]:-1} == 0 ]]; then
  R_DB=$((R_LOCK + R_FENCE + R_VERIFY + R_SEQ))
  note "validate (at a fence, writers on)     $(show repl_validate) s"
  note "lag before the freeze (not frozen)   $R_LAG ms"
  note "lock $R_LOCK ms + fence $R_FENCE ms + verify (counts) $R_VERIFY ms + sequences $R_SEQ ms = database part $(ms_s "$R_DB") s"
  if ((R_DB < FREEZE_GOAL * 1000)); then verdict=met; else
    verdict="NOT met"
    ((BENCH_STRICT == 1)) && STATUS=1
  fi
  note "  (goal < $FREEZE_GOAL s: $verdict)"
  note "writes refused on the source, until the phase ended (cutover's figure)  $(ms_s "$R_TOTAL") s"
  note "writer's side: first refused write → cutover process exit              $WRITER_FREEZE s"
  note "cutover command in all                 $(show repl_cutover) s"
  ((W_REFUSED > 0)) || { note "no write met the freeze: the writer-side figure is missing"; STATUS=1; }
  ((W_OTHER == 0 && LATE_OK == 0)) || STATUS=1
else
  note "n/a (the cutover phase failed, output above)"
fi
echo "3. copy mode's verified freeze (no writer)"
if [[ ${RC[copy_cutover]:-1} == 0 && ${RC[copy_validate]:-1} == 0 ]]; then
  C_DB=$((C_LOCK + C_VERIFY + C_SEQ))
  note "validate alone                       $(show copy_validate) s"
  note "lock $C_LOCK ms + verify (counts, checksums) $C_VERIFY ms + sequences $C_SEQ ms = database part $(ms_s "$C_DB") s"
  note "writes refused on the source, until the phase ended  $(ms_s "$C_TOTAL") s"
  note "freeze / validate  $(ratio "$(ms_s "$C_TOTAL")" "${TOOK[copy_validate]}")× (database part: $(ratio "$(ms_s "$C_DB")" "${TOOK[copy_validate]}")×)"
else
  note "n/a (validate or cutover failed, output above)"
fi
echo "targets equal to their sources (counts, checksums, indexes/constraints/triggers)"
for label in copy_data repl_data copy_cutover repl_cutover; do
  note "$(printf '%-14s' "$label") ${SAME[$label]:-n/a}"
  [[ ${SAME[$label]:-} == yes ]] || STATUS=1
done
((${#FAILED[@]})) && echo "failed: ${FAILED[*]}"
exit "$STATUS"
