#!/usr/bin/env bash
# The demo: builds a source and a target database on the local PostgreSQL from
# examples/ops-portal (the source as `supabase db push` + seed data leave it,
# the target empty), runs cutover on them and prints the job summary.
#
#   scripts/demo.sh                      # plan,preflight,schema,data,config,validate
#   scripts/demo.sh plan,preflight       # any phase list
#
# Needs PostgreSQL on 127.0.0.1:5432 (override with CUTOVER_DEMO_PG) and psql.
set -euo pipefail
cd "$(dirname "$0")/.."

PHASES=${1:-plan,preflight,schema,data,config,validate}
PG=${CUTOVER_DEMO_PG:-postgres://postgres@127.0.0.1:5432}
EXAMPLE=examples/ops-portal
SRC=cutover_demo_source
TGT=cutover_demo_target
OUT=${CUTOVER_DEMO_OUT:-target/demo}

echo "== building cutover (the first build takes a few minutes)"
cargo build --bin cutover

echo "== creating $SRC and $TGT on $PG"
psql "$PG/postgres" -q -v ON_ERROR_STOP=1 \
  -c "drop database if exists $SRC with (force)" \
  -c "drop database if exists $TGT with (force)" \
  -c "create database $SRC" \
  -c "create database $TGT" >/dev/null
for db in $SRC $TGT; do
  psql "$PG/$db" -q -v ON_ERROR_STOP=1 -f tests/fixtures/supabase_bootstrap.sql >/dev/null
done

echo "== source: applying $EXAMPLE migrations as the Supabase CLI would, then seed data"
psql "$PG/$SRC" -q -v ON_ERROR_STOP=1 -c "create table if not exists supabase_migrations.schema_migrations (version text not null primary key, statements text[], name text)" >/dev/null
for file in "$EXAMPLE"/supabase/migrations/*.sql; do
  base=$(basename "$file" .sql)
  version=${base%%_*}
  name=${base#*_}
  if grep -qi 'concurrently' "$file"; then single=(); else single=(-1); fi
  psql "$PG/$SRC" -q -v ON_ERROR_STOP=1 "${single[@]}" -f "$file" >/dev/null
  psql "$PG/$SRC" -q -v ON_ERROR_STOP=1 \
    -c "insert into supabase_migrations.schema_migrations (version, name) values ('$version', '$name')" >/dev/null
done
psql "$PG/$SRC" -q -v ON_ERROR_STOP=1 -f "$EXAMPLE/supabase/seed.sql" >/dev/null

# The manifest's secrets come from the job's environment; demo values here.
export TARGET_GOOGLE_REFRESH_TOKEN=demo-refresh-token
export TARGET_GOOGLE_CLIENT_ID=demo-client-id
export TARGET_GOOGLE_CLIENT_SECRET=demo-client-secret
export TARGET_RESEND_API_KEY=demo-resend-key
export TARGET_APP_URL=http://localhost:5173
export TARGET_WHATSAPP_API_KEY=demo-whatsapp-key
export TARGET_SUPABASE_URL=http://localhost:54321
export TARGET_SUPABASE_ANON_KEY=demo-anon-key

mkdir -p "$OUT"
rm -f "$OUT/summary.md"
echo "== cutover $PHASES"
set +e
./target/debug/cutover "$PHASES" \
  --manifest "$EXAMPLE/cutover.toml" \
  --source-db-url "$PG/$SRC" \
  --target-db-url "$PG/$TGT" \
  --summary-file "$OUT/summary.md" \
  --report-file "$OUT/report.json"
status=$?
set -e
echo
echo "== job summary ($OUT/summary.md)"
cat "$OUT/summary.md"
echo
echo "cutover exited with $status; JSON report: $OUT/report.json"
echo "databases $SRC and $TGT are left for you to inspect (psql $PG/$TGT)"
if [ "$status" = 0 ]; then
  echo
  echo "next: scripts/demo.sh plan           # what each phase would do, read-only"
  echo "      cargo install --path .          # put cutover on PATH"
  echo "      cargo test                      # the test suite"
fi
exit $status
