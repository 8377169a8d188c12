#!/usr/bin/env bash
# bench/data.sh: how fast is cutover's data phase, next to the usual ways of
# copying a database and next to the fastest copy PostgreSQL allows?
#
#   bench/data.sh [--rows N] [--keep]
#
# Generates bench_source (bench/schema.sql + bench/generate.sql, N rows in
# all, default 4,000,000 ≈ 1.2 GB), copies it once per method into its own
# target database, checks every copy against the source (row counts, row
# checksums, indexes/constraints/triggers) and prints each time and its ratio
# to cutover's. Then times validate's checksums next to a naive checksum pass
# over the same tables (goal ≤ 0.5×). See bench/README.md.
#
# Environment:
#   BENCH_PG      base URL of the server, no database (default postgres://postgres@127.0.0.1:5432)
#   CUTOVER_BIN   cutover binary (default target/release/cutover, built with
#                 `cargo build --release` when missing)
#   BENCH_STRICT  1: also fail when cutover's data phase fails or is more than
#                 1.3× the raw COPY ceiling, or validate's checksums take more
#                 than 0.5× the naive pass (otherwise only reported)
#   BENCH_INDEX_MEM  maintenance_work_mem of the ceiling's index builds
#                 (default 128MB, what cutover uses for its own)
#   BENCH_VALIDATE_RUNS  rounds of the validation passes, best kept (default 3)
#
# Exit status: 0 when every method that ran produced an identical copy and
# every validation pass agreed between the two identical databases (and, with
# BENCH_STRICT=1, cutover ran within 1.3× of the ceiling and validate's
# checksums within 0.5× of the naive pass); 1 otherwise; 2 for bad usage.

set -euo pipefail

usage() {
  sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

ROWS=4000000
KEEP=0
while (($#)); do
  case $1 in
    --rows) [[ $# -ge 2 ]] || { echo "--rows needs a number" >&2; exit 2; }; ROWS=$2; shift 2 ;;
    --rows=*) ROWS=${1#--rows=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (usage: bench/data.sh [--rows N] [--keep])" >&2; exit 2 ;;
  esac
done
if ! [[ $ROWS =~ ^[0-9]+$ ]] || ((ROWS < 100)); then
  echo "--rows must be a whole number of at least 100 (got '$ROWS')" >&2
  exit 2
fi

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
cd "$REPO_DIR"

BENCH_PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
CUTOVER_BIN=${CUTOVER_BIN:-target/release/cutover}
BENCH_STRICT=${BENCH_STRICT:-0}
BENCH_INDEX_MEM=${BENCH_INDEX_MEM:-128MB}
JOBS=2               # tables / index builds at a time, for every method
CEILING_GOAL=1.3     # cutover's time / raw ceiling's time should stay under this
VALIDATE_GOAL=0.5    # validate's checksums / the naive pass should stay under this
CUTOVER_REPORT=/tmp/bench-cutover-report.json
CUTOVER_SUMMARY=/tmp/bench-cutover-summary.md

for tool in psql pg_dump pg_restore bc awk flock mkfifo; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required but not installed" >&2; exit 1; }
done

# --- URLs ---------------------------------------------------------------------
# BENCH_PG may carry ?parameters and even a database name; the database is
# replaced, the parameters kept.
PG_BASE=${BENCH_PG%%\?*}
PG_QUERY=
[[ $BENCH_PG == *\?* ]] && PG_QUERY=${BENCH_PG#*\?}
PG_SCHEME=${PG_BASE%%://*}
PG_REST=${PG_BASE#*://}
PG_REST=${PG_REST%%/*}
db_url() { printf '%s://%s/%s%s' "$PG_SCHEME" "$PG_REST" "$1" "${PG_QUERY:+?$PG_QUERY}"; }

ADMIN=$(db_url postgres)
SRC=$(db_url bench_source)
METHODS=(cutover dump_psql dump_dir pgcopydb raw)
declare -A TGT LABEL
for m in "${METHODS[@]}"; do TGT[$m]=$(db_url "bench_t_$m"); done
LABEL[cutover]="cutover data"
LABEL[dump_psql]="runbook (pg_dump|psql)"
LABEL[dump_dir]="pg_dump -Fd -j2 | pg_restore -j2"
LABEL[pgcopydb]="pgcopydb clone"
LABEL[raw]="raw COPY ceiling"
DATABASES=(bench_source)
for m in "${METHODS[@]}"; do DATABASES+=("bench_t_$m"); done

TABLES=(public.customers public.sales_transactions public.invoices public.whatsapp_message_logs)

# --- helpers ------------------------------------------------------------------
pq() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
pqa() { psql -X -q -v ON_ERROR_STOP=1 -At -F'|' "$@"; }
now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }
fmt1() { awk -v x="$1" 'BEGIN { printf "%.1f", x }'; }
fmt2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }
say() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }

# Runs "$fn arg" for every arg, at most $1 at a time; fails if any failed.
run_parallel() {
  local jobs=$1 fn=$2 running=0 failed=0
  shift 2
  for arg in "$@"; do
    if ((running >= jobs)); then
      wait -n || failed=1
      running=$((running - 1))
    fi
    "$fn" "$arg" </dev/null &
    running=$((running + 1))
  done
  while ((running > 0)); do
    wait -n || failed=1
    running=$((running - 1))
  done
  return "$failed"
}

# Runs SQL statements (one per argument, one line each) on database URL $1
# over $2 sessions that each take the next statement as soon as they are free:
# the order given, at most $2 at a time, $2 connections in all.
sql_pool() {
  local url=$1 jobs=$2 dir i failed=0
  shift 2
  (($#)) || return 0
  dir=$(mktemp -d "$WORK/pool.XXXXXX")
  printf '%s\n' "$@" >"$dir/queue"
  echo 0 >"$dir/next"
  for ((i = 0; i < jobs; i++)); do
    sql_pool_worker "$url" "$dir" "$#" "$i" &
  done
  for ((i = 0; i < jobs; i++)); do wait -n || failed=1; done
  return "$failed"
}
sql_pool_claim() { # the next statement's number, nothing once all are taken
  (
    flock 9
    n=$(<"$1/next")
    if ((n < $2)); then
      echo $((n + 1)) >"$1/next"
      echo $((n + 1))
    fi
  ) 9>"$1/lock"
}
sql_pool_worker() {
  local url=$1 dir=$2 total=$3 id=$4 k stmt line finished in out pid
  mkfifo "$dir/in$id" "$dir/out$id"
  psql -X -q -v ON_ERROR_STOP=1 "$url" <"$dir/in$id" >"$dir/out$id" 2>&1 &
  pid=$!
  exec {in}>"$dir/in$id" {out}<"$dir/out$id"
  while k=$(sql_pool_claim "$dir" "$total") && [[ -n $k ]]; do
    stmt=$(sed -n "${k}p" "$dir/queue")
    printf '%s;\n\\echo __pool_done__\n' "$stmt" >&"$in"
    finished=0
    while IFS= read -r line <&"$out"; do
      if [[ $line == __pool_done__ ]]; then finished=1; break; fi
      printf '%s\n' "$line"
    done
    if ((!finished)); then
      echo "failed: $stmt" >&2
      exec {in}>&- {out}<&-
      wait "$pid" || true
      return 1
    fi
  done
  exec {in}>&- {out}<&-
  wait "$pid"
}

drop_databases() {
  for db in "${DATABASES[@]}"; do
    pq "$ADMIN" -c "drop database if exists $db with (force)" 2>/dev/null || true
  done
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cutover-bench.XXXXXX")
cleanup() {
  local pids
  pids=$(jobs -p)
  [[ -n $pids ]] && kill $pids 2>/dev/null || true
  if ((KEEP)); then
    printf '\n--keep: databases %s kept; logs in %s\n' "${DATABASES[*]}" "$WORK"
  else
    drop_databases
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# --- cutover binary -----------------------------------------------------------
CUTOVER_NOTE=
if [[ ! -x $CUTOVER_BIN ]]; then
  if [[ $CUTOVER_BIN == target/release/cutover ]] && command -v cargo >/dev/null; then
    say "building cutover (cargo build --release)"
    if ! cargo build --release; then
      CUTOVER_NOTE="cargo build --release failed"
    fi
  fi
  [[ -x $CUTOVER_BIN ]] || CUTOVER_NOTE=${CUTOVER_NOTE:-"no cutover binary at $CUTOVER_BIN (set CUTOVER_BIN)"}
fi
HAVE_PGCOPYDB=0
command -v pgcopydb >/dev/null && HAVE_PGCOPYDB=1

# --- databases and data -------------------------------------------------------
N_CUSTOMERS=$((ROWS * 5 / 100))
N_SALES=$((ROWS * 45 / 100))
N_INVOICES=$((ROWS * 25 / 100))
N_LOGS=$((ROWS - N_CUSTOMERS - N_SALES - N_INVOICES))

say "recreating databases ${DATABASES[*]} on ${PG_REST#*@}"
drop_databases
for db in "${DATABASES[@]}"; do pq "$ADMIN" -c "create database $db"; done

say "generating $ROWS rows in bench_source"
t0=$(now)
pq "$SRC" -f bench/schema.sql
gen() {
  pq "$SRC" -v n_customers="$N_CUSTOMERS" -v n_sales="$N_SALES" -v n_invoices="$N_INVOICES" \
    -v n_logs="$N_LOGS" -v part_a="$1" -v part_b="$2" -v part_c="$3" -f bench/generate.sql >/dev/null
}
gen true false false &
gen false true false &
wait -n
wait -n
gen false false true
note "generated in $(fmt1 "$(elapsed "$t0" "$(now)")") s (not part of any timing)"

say "dataset"
pqa "$SRC" -c "select pg_size_pretty(pg_database_size(current_database())), pg_database_size(current_database())" |
  while IFS='|' read -r pretty bytes; do note "bench_source: $pretty ($bytes bytes, pg_database_size), $ROWS rows"; done
printf '    %-32s %12s %12s %12s\n' table rows table+toast indexes
for t in "${TABLES[@]}"; do
  pqa "$SRC" -c "select (select count(*) from $t), pg_size_pretty(pg_table_size('$t')), pg_size_pretty(pg_indexes_size('$t'))" |
    while IFS='|' read -r n ts is; do printf '    %-32s %12s %12s %12s\n' "$t" "$n" "$ts" "$is"; done
done

# --- verification -------------------------------------------------------------
# Row counts and an order-independent checksum of every row's text, plus the
# indexes, constraints and triggers of the four tables.
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
  from pg_trigger t where not t.tgisinternal and t.tgrelid in (select oid from rels)
) as x order by line collate "C";
SQL
}
DATA_SQL=$(data_sql)
SCHEMA_SQL=$(schema_sql)

say "checksumming bench_source"
t0=$(now)
pqa "$SRC" -c "$DATA_SQL" >"$WORK/source.data"
pqa "$SRC" -c "$SCHEMA_SQL" >"$WORK/source.schema"
note "$(wc -l <"$WORK/source.schema") indexes/constraints/triggers; checksums in $(fmt1 "$(elapsed "$t0" "$(now)")") s"

# Sets IDENT[$1] to yes / no (...), printing the differences.
declare -A IDENT TIME
verify() {
  local m=$1 url=${TGT[$1]} bad=()
  if ! pqa "$url" -c "$DATA_SQL" >"$WORK/$m.data" 2>"$WORK/$m.verify.err"; then
    IDENT[$m]="no (cannot read the tables)"
    sed 's/^/      /' "$WORK/$m.verify.err"
    return
  fi
  pqa "$url" -c "$SCHEMA_SQL" >"$WORK/$m.schema"
  if ! cmp -s "$WORK/source.data" "$WORK/$m.data"; then
    bad+=("rows")
    note "rows differ (table|count|checksum), source < > ${LABEL[$m]}:"
    diff "$WORK/source.data" "$WORK/$m.data" | sed 's/^/      /' || true
  fi
  if ! cmp -s "$WORK/source.schema" "$WORK/$m.schema"; then
    bad+=("indexes/constraints")
    note "indexes/constraints/triggers differ, source < > ${LABEL[$m]}:"
    diff "$WORK/source.schema" "$WORK/$m.schema" | sed 's/^/      /' || true
  fi
  if ((${#bad[@]})); then
    IDENT[$m]="no (${bad[*]})"
  else
    IDENT[$m]=yes
  fi
  note "identical to the source: ${IDENT[$m]}"
}

# --- the methods --------------------------------------------------------------
# prepare_X runs untimed; run_X is timed, in a child process so that `set -e`
# applies inside it, with its output in $WORK/X.log.

prepare_cutover() {
  mkdir -p bench/empty-migrations  # the manifest's migrations_dir must exist
  pq "${TGT[cutover]}" -f bench/schema.sql >/dev/null
}
run_cutover() {
  "$CUTOVER_BIN" data --manifest bench/cutover.toml \
    --source-db-url "$SRC" --target-db-url "${TGT[cutover]}" \
    --report-file "$CUTOVER_REPORT" --summary-file "$CUTOVER_SUMMARY"
}

prepare_dump_psql() { pq "${TGT[dump_psql]}" -f bench/schema.sql >/dev/null; }
run_dump_psql() {
  local args=() t
  for t in "${TABLES[@]}"; do args+=("--table=$t"); done
  pg_dump --data-only "${args[@]}" "$SRC" |
    PGOPTIONS='-c session_replication_role=replica' psql -X -q -v ON_ERROR_STOP=1 "${TGT[dump_psql]}"
}

prepare_dump_dir() { rm -rf "$WORK/dump"; }
run_dump_dir() {
  pg_dump -Fd -j"$JOBS" --no-owner -f "$WORK/dump" "$SRC"
  pg_restore -j"$JOBS" --no-owner --exit-on-error -d "${TGT[dump_dir]}" "$WORK/dump"
}

prepare_pgcopydb() { rm -rf "$WORK/pgcopydb"; }
run_pgcopydb() {
  pgcopydb clone --source "$SRC" --target "${TGT[pgcopydb]}" \
    --table-jobs "$JOBS" --index-jobs "$JOBS" --dir "$WORK/pgcopydb" --no-owner
}

# The ceiling: tables created without keys, indexes, FKs or triggers (pg_dump's
# pre-data section), a binary COPY (FREEZE) piped from source to target per
# table ($JOBS at a time), then every index built ($JOBS sessions at a time, with
# maintenance_work_mem = $BENCH_INDEX_MEM; primary keys and unique constraints
# as unique indexes, attached afterwards), then the foreign keys (added NOT
# VALID, then validated $JOBS at a time: validations of FKs to the same table
# do not block each other), then the triggers.
RAW_TABLES=() RAW_INDEXES=() RAW_ATTACH=() RAW_FKS=() RAW_VALIDATE=() RAW_TRIGGERS=()
prepare_raw() {
  local list
  list=$(printf "'%s'::regclass, " "${TABLES[@]}")
  list="array[${list%, }]"
  pg_dump --schema-only --section=pre-data --no-owner "$SRC" | pq "${TGT[raw]}" >/dev/null
  mapfile -t RAW_TABLES < <(pqa "$SRC" -c "
    select r::text from unnest($list) as r order by pg_table_size(r) desc")
  mapfile -t RAW_INDEXES < <(pqa "$SRC" -c "
    select pg_get_indexdef(i.indexrelid) from pg_index i
    where i.indrelid = any($list)
    order by pg_table_size(i.indrelid) desc, i.indisprimary desc, i.indexrelid")
  mapfile -t RAW_ATTACH < <(pqa "$SRC" -c "
    select format('alter table only %s add constraint %I %s using index %I', c.conrelid::regclass,
                  c.conname, case c.contype when 'p' then 'primary key' else 'unique' end, i.relname)
    from pg_constraint c join pg_class i on i.oid = c.conindid
    where c.conrelid = any($list) and c.contype in ('p', 'u') order by c.oid")
  mapfile -t RAW_FKS < <(pqa "$SRC" -c "
    select format('alter table only %s add constraint %I %s not valid', c.conrelid::regclass, c.conname,
                  pg_get_constraintdef(c.oid))
    from pg_constraint c where c.conrelid = any($list) and c.contype = 'f'
    order by pg_table_size(c.conrelid) desc, c.oid")
  mapfile -t RAW_VALIDATE < <(pqa "$SRC" -c "
    select format('alter table only %s validate constraint %I', c.conrelid::regclass, c.conname)
    from pg_constraint c where c.conrelid = any($list) and c.contype = 'f'
    order by pg_table_size(c.conrelid) desc, c.oid")
  mapfile -t RAW_TRIGGERS < <(pqa "$SRC" -c "
    select pg_get_triggerdef(t.oid) from pg_trigger t
    where t.tgrelid = any($list) and not t.tgisinternal order by t.oid")
}
# TRUNCATE in the same transaction lets COPY write the rows already frozen, so
# the index builds that read them next do not have to set hint bits.
raw_copy() {
  psql -X -q -v ON_ERROR_STOP=1 "$SRC" -c "copy $1 to stdout (format binary)" |
    psql -X -q -v ON_ERROR_STOP=1 -1 "${TGT[raw]}" -c "truncate $1" \
      -c "copy $1 from stdin (format binary, freeze)"
}
run_raw() {
  local t0
  t0=$(now)
  run_parallel "$JOBS" raw_copy "${RAW_TABLES[@]}"
  echo "copy: $(fmt1 "$(elapsed "$t0" "$(now)")") s (${#RAW_TABLES[@]} tables)"
  t0=$(now)
  PGOPTIONS="-c maintenance_work_mem=$BENCH_INDEX_MEM" sql_pool "${TGT[raw]}" "$JOBS" "${RAW_INDEXES[@]}"
  printf '%s;\n' "${RAW_ATTACH[@]}" | pq "${TGT[raw]}"
  echo "indexes: $(fmt1 "$(elapsed "$t0" "$(now)")") s (${#RAW_INDEXES[@]} indexes)"
  t0=$(now)
  printf '%s;\n' "${RAW_FKS[@]}" | pq "${TGT[raw]}"
  sql_pool "${TGT[raw]}" "$JOBS" "${RAW_VALIDATE[@]}"
  printf '%s;\n' "${RAW_TRIGGERS[@]}" | pq "${TGT[raw]}"
  echo "foreign keys and triggers: $(fmt1 "$(elapsed "$t0" "$(now)")") s (${#RAW_FKS[@]} foreign keys)"
}

run_method() {
  local m=$1 pid rc t0 t1
  say "${LABEL[$m]} → bench_t_$m"
  if [[ $m == cutover && -n $CUTOVER_NOTE ]]; then
    TIME[$m]=n/a IDENT[$m]="-"
    note "skipped: $CUTOVER_NOTE"
    return
  fi
  if [[ $m == pgcopydb ]] && ((!HAVE_PGCOPYDB)); then
    TIME[$m]=n/a IDENT[$m]="-"
    note "skipped: pgcopydb is not installed (e.g. apt-get install pgcopydb)"
    return
  fi
  "prepare_$m"
  pq "$ADMIN" -c checkpoint
  t0=$(now)
  "run_$m" >"$WORK/$m.log" 2>&1 &
  pid=$!
  rc=0
  wait "$pid" || rc=$?
  t1=$(now)
  if ((rc == 0)); then
    TIME[$m]=$(elapsed "$t0" "$t1")
    note "$(fmt1 "${TIME[$m]}") s"
    case $m in
      cutover) tail -n 15 "$WORK/$m.log" | sed 's/^/      | /' ;;
      raw) sed 's/^/      | /' "$WORK/$m.log" ;;
    esac
    verify "$m"
  else
    TIME[$m]=n/a IDENT[$m]="-"
    note "FAILED after $(fmt1 "$(elapsed "$t0" "$t1")") s (exit status $rc); its output:"
    tail -n 40 "$WORK/$m.log" | sed 's/^/      | /'
  fi
}

for m in "${METHODS[@]}"; do run_method "$m"; done

# --- validation -----------------------------------------------------------------
# Once the copies are made: how long validate's content checksums take, next to
# the naive pass (sum(hashtext(t::text)) over every table) and to the row hash
# validate used before (hashtextextended of the row's text, summed as numeric).
# Each pass runs on bench_source and on one identical copy at the same time, as
# validate does; the passes take turns, $VALIDATE_RUNS rounds, best time kept.
# validate's own statements are taken from its log (sqlx::query at trace level).
VALIDATE_STABLE="set local timezone = 'UTC'; set local datestyle = 'ISO, YMD'; set local intervalstyle = 'postgres'; set local extra_float_digits = 1; set local bytea_output = 'hex'; set local lc_monetary = 'C'; set local search_path = pg_catalog;"
VPASSES=(naive old new)
declare -A VLABEL VTIME VEQUAL
VLABEL[naive]="naive sum(hashtext(t::text))"
VLABEL[old]="before: hash of the row's text"
VLABEL[new]="validate's checksums"
VLABEL[phase]="cutover validate (whole phase)"
VAL_METHOD=
for m in cutover raw dump_dir dump_psql pgcopydb; do
  if [[ ${IDENT[$m]:-} == yes ]]; then VAL_METHOD=$m; break; fi
done
VAL_NOTE=

# Writes $WORK/$1.sql: a read-only transaction with validate's settings
# around the statements on stdin.
pass_file() {
  { echo "begin read only;"; echo "$VALIDATE_STABLE"; cat; echo "rollback;"; } >"$WORK/$1.sql"
}
# Runs $WORK/$1.sql on the source and the copy at once; sets PASS_T to the
# seconds, and VEQUAL[$1] to whether both sides returned the same rows.
time_pass() {
  local p=$1 t0 t1 rc=0 a b
  t0=$(now)
  pqa "$SRC" -f "$WORK/$p.sql" >"$WORK/$p.source.out" 2>&1 &
  a=$!
  pqa "$VTGT" -f "$WORK/$p.sql" >"$WORK/$p.target.out" 2>&1 &
  b=$!
  wait "$a" || rc=1
  wait "$b" || rc=1
  t1=$(now)
  if ((rc)); then
    VEQUAL[$p]="failed"
    sed 's/^/      | /' "$WORK/$p.source.out" "$WORK/$p.target.out" | head -20 >&2
    return 1
  fi
  if cmp -s "$WORK/$p.source.out" "$WORK/$p.target.out"; then VEQUAL[$p]=yes; else VEQUAL[$p]=no; fi
  PASS_T=$(elapsed "$t0" "$t1")
}
run_validate_phase() {
  CUTOVER_LOG=sqlx::query=trace NO_COLOR=1 "$CUTOVER_BIN" validate --manifest bench/cutover.toml \
    --source-db-url "$SRC" --target-db-url "$VTGT" \
    --report-file "$WORK/validate-report.json" --summary-file "$WORK/validate-summary.md" \
    >"$WORK/validate.log" 2>"$WORK/validate.trace"
}

validation_timing() {
  local t p r n best t0 rc tables_sql
  VEQUAL=()
  say "validation: checksum passes over bench_source and bench_t_$VAL_METHOD, both at once"
  VTGT=${TGT[$VAL_METHOD]}
  tables_sql=$(printf "'%s'::regclass, " "${TABLES[@]}")
  tables_sql="array[${tables_sql%, }]"
  # The naive pass, and validate's statements before this change.
  for t in "${TABLES[@]}"; do echo "select sum(hashtext(t::text)) from $t as t;"; done | pass_file naive
  pqa "$SRC" -c "
    select format('select count(*), coalesce(sum(hashtextextended(row(%s)::text, 0)::numeric), 0)::text from %s as src;',
                  string_agg('src.' || quote_ident(a.attname), ', ' order by a.attname collate \"C\"),
                  format('%I.%I', n.nspname, c.relname))
      from unnest($tables_sql) with ordinality as x(r, o)
      join pg_class c on c.oid = x.r
      join pg_namespace n on n.oid = c.relnamespace
      join pg_attribute a on a.attrelid = x.r and a.attnum > 0 and not a.attisdropped
     group by n.nspname, c.relname, o order by o" | pass_file old
  # Warm both sides up, then the whole validate phase (its log holds the
  # checksum statements).
  time_pass naive || true
  if [[ -n $CUTOVER_NOTE ]]; then
    VTIME[phase]=n/a VEQUAL[phase]="-"
    VAL_NOTE="no cutover binary: $CUTOVER_NOTE"
  else
    t0=$(now)
    rc=0
    run_validate_phase || rc=$?
    VTIME[phase]=$(elapsed "$t0" "$(now)")
    if ((rc == 0)); then VEQUAL[phase]=pass; else VEQUAL[phase]="exit $rc"; fi
    note "cutover validate: $(fmt2 "${VTIME[phase]}") s (${VEQUAL[phase]}); output in $WORK/validate.log"
    sed 's/\x1b\[[0-9;]*m//g' "$WORK/validate.trace" |
      sed -n 's/.*db\.statement="\\n\\n\(select count(\*), coalesce(sum(.* as src\)\\n" rows_affected=.*/\1;/p' |
      sed 's/\\"/"/g; s/\\\\/\\/g' | sort -u | pass_file new
    n=$(grep -c '^select' "$WORK/new.sql" || true)
    if ((n != ${#TABLES[@]})); then
      VAL_NOTE="found $n checksum statements in validate's log, expected ${#TABLES[@]}"
      rm -f "$WORK/new.sql"
    fi
  fi
  for ((r = 1; r <= VALIDATE_RUNS; r++)); do
    for p in "${VPASSES[@]}"; do
      [[ -f $WORK/$p.sql ]] || continue
      if time_pass "$p"; then
        t=$PASS_T best=${VTIME[$p]:-}
        if [[ -z $best ]] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then VTIME[$p]=$t; fi
        note "round $r: ${VLABEL[$p]}: $(fmt2 "$t") s"
      fi
    done
  done
  for p in "${VPASSES[@]}"; do
    VTIME[$p]=${VTIME[$p]:-n/a}
    VEQUAL[$p]=${VEQUAL[$p]:--}
  done
}

VALIDATE_RUNS=${BENCH_VALIDATE_RUNS:-3}
if [[ -n $VAL_METHOD ]]; then
  validation_timing
else
  say "validation: skipped, no method produced an identical copy"
fi

# --- results ------------------------------------------------------------------
say "results: $ROWS rows, $(pqa "$SRC" -c "select pg_size_pretty(pg_database_size(current_database()))"), $JOBS jobs"
CT=${TIME[cutover]}
has_ct() { [[ $CT != n/a ]]; }
printf '    %-34s %9s  %-30s %s\n' method seconds identical ratio
for m in "${METHODS[@]}"; do
  t=${TIME[$m]} r=n/a
  if [[ $t != n/a ]] && has_ct; then
    case $m in
      cutover) r="1.00×" ;;
      raw) r="$(ratio "$CT" "$t")× (cutover/ceiling)" ;;
      *) r="$(ratio "$t" "$CT")× (method/cutover)" ;;
    esac
  fi
  [[ $t != n/a ]] && t=$(fmt1 "$t")
  printf '    %-34s %9s  %-30s %s\n' "${LABEL[$m]}" "$t" "${IDENT[$m]}" "$r"
done
if [[ -n $VAL_METHOD ]]; then
  echo
  echo "    validation, bench_source and bench_t_$VAL_METHOD at once (best of $VALIDATE_RUNS):"
  printf '    %-34s %9s  %-30s %s\n' pass seconds "same on both sides" "ratio to naive"
  VN=${VTIME[naive]}
  for p in "${VPASSES[@]}" phase; do
    t=${VTIME[$p]} r=n/a
    if [[ $t != n/a && $VN != n/a ]]; then r="$(ratio "$t" "$VN")×"; fi
    [[ $t == n/a ]] || t=$(fmt2 "$t")
    printf '    %-34s %9s  %-30s %s\n' "${VLABEL[$p]}" "$t" "${VEQUAL[$p]}" "$r"
  done
  if [[ -n $VAL_NOTE ]]; then note "($VAL_NOTE)"; fi
fi
echo
STATUS=0
for m in "${METHODS[@]}"; do
  t=${TIME[$m]}
  if [[ $t == n/a ]]; then
    why="n/a"
    if [[ $m == cutover && -n $CUTOVER_NOTE ]]; then why="n/a ($CUTOVER_NOTE)"
    elif [[ $m == cutover ]]; then why="n/a (the data phase failed, output above)"
    elif [[ $m == pgcopydb ]] && ((!HAVE_PGCOPYDB)); then why="n/a (not installed)"
    else why="n/a (failed, output above)"; fi
    echo "${LABEL[$m]}: $why"
    if [[ $m == cutover ]]; then
      ((BENCH_STRICT == 1)) && STATUS=1
    elif [[ $m != pgcopydb ]] || ((HAVE_PGCOPYDB)); then
      STATUS=1
    fi
    continue
  fi
  [[ ${IDENT[$m]} == yes ]] || STATUS=1
  if [[ $m == cutover ]]; then
    echo "${LABEL[$m]}: $(fmt1 "$t") s"
  elif ! has_ct; then
    echo "${LABEL[$m]}: $(fmt1 "$t") s (no cutover time to compare with)"
  elif [[ $m == raw ]]; then
    r=$(ratio "$CT" "$t")
    if awk -v r="$r" -v g="$CEILING_GOAL" 'BEGIN { exit !(r <= g) }'; then verdict="met"; else
      verdict="NOT met"
      ((BENCH_STRICT == 1)) && STATUS=1
    fi
    echo "${LABEL[$m]}: $(fmt1 "$t") s; cutover takes ${r}× the ceiling (goal ≤ ${CEILING_GOAL}×: $verdict)"
  else
    echo "${LABEL[$m]}: $(fmt1 "$t") s, $(ratio "$t" "$CT")× cutover's time"
  fi
  [[ ${IDENT[$m]} == yes ]] || echo "    ^ the copy is NOT identical to the source: ${IDENT[$m]}"
done
if [[ -n $VAL_METHOD ]]; then
  for p in "${VPASSES[@]}"; do
    if [[ ${VEQUAL[$p]} == no || ${VEQUAL[$p]} == failed ]]; then
      echo "${VLABEL[$p]}: ${VEQUAL[$p]/no/differ between two identical databases}"
      STATUS=1
    fi
  done
  if [[ ${VTIME[new]} == n/a || ${VTIME[naive]} == n/a ]]; then
    echo "validate's checksums: n/a${VAL_NOTE:+ ($VAL_NOTE)}"
    if ((BENCH_STRICT == 1)); then STATUS=1; fi
  else
    r=$(ratio "${VTIME[new]}" "${VTIME[naive]}")
    if awk -v r="$r" -v g="$VALIDATE_GOAL" 'BEGIN { exit !(r <= g) }'; then verdict="met"; else
      verdict="NOT met"
      if ((BENCH_STRICT == 1)); then STATUS=1; fi
    fi
    before=
    [[ ${VTIME[old]} == n/a ]] || before="; before this change ${VLABEL[old]#before: } took $(ratio "${VTIME[old]}" "${VTIME[naive]}")×"
    echo "validate's checksums: $(fmt2 "${VTIME[new]}") s, ${r}× the naive pass (goal ≤ ${VALIDATE_GOAL}×: $verdict)$before"
  fi
fi
exit "$STATUS"
