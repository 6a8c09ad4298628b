#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for tests: `scripts/postgres.sh start|stop|url|status`.
#
#   eval "$(scripts/postgres.sh start)"   # starts (or reuses) the cluster and exports TEST_POSTGRES_URL
#   make test                             # now runs the suite on SQLite and on PostgreSQL
#   scripts/postgres.sh stop              # stops it and deletes its files
#
# The cluster lives in a temp directory (fsync off, trust auth, 127.0.0.1 only): never use it for real data.
# PostgreSQL refuses to run as root, so as root the cluster is owned by and run as the `postgres` user.
# Environment: PG_PORT (first port to try, default 55432), PG_DIR (cluster directory), PG_BIN (server binaries).
set -euo pipefail

ROLE=trdbot
PASSWORD=trdbot
DATABASE=trdbot_test
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# One cluster per checkout and user, found again by `stop` and `url` without any other state.
PG_DIR="${PG_DIR:-${TMPDIR:-/tmp}/trdbot-pg-$(id -u)-$(printf '%s' "$repo_root" | cksum | cut -d' ' -f1)}"
DATA="$PG_DIR/data"
PORT_FILE="$PG_DIR/port"

log() { echo "postgres.sh: $*" >&2; }
die() { log "$*"; exit 1; }

find_bin_dir() {
  if [[ -n "${PG_BIN:-}" ]]; then echo "$PG_BIN"; return; fi
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -z "$dir" ]] && command -v pg_config >/dev/null; then dir="$(pg_config --bindir)"; fi
  [[ -n "$dir" && -x "$dir/initdb" ]] || die "no PostgreSQL server binaries found (apt-get install postgresql, or set PG_BIN)"
  echo "$dir"
}

# Run a command as the cluster owner: `postgres` when we are root, ourselves otherwise.
as_owner() {
  if [[ "$(id -u)" -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {
  local port="${PG_PORT:-55432}" tries=0
  while port_busy "$port"; do
    tries=$((tries + 1))
    [[ $tries -lt 50 ]] || die "no free port found from ${PG_PORT:-55432} upwards"
    port=$((port + 1))
  done
  echo "$port"
}

url() {
  [[ -f "$PORT_FILE" ]] || die "no cluster in $PG_DIR (run: scripts/postgres.sh start)"
  echo "postgresql+asyncpg://$ROLE:$PASSWORD@127.0.0.1:$(cat "$PORT_FILE")/$DATABASE"
}

is_running() {
  [[ -f "$DATA/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

init_cluster() {
  rm -rf "$PG_DIR"
  mkdir -p "$PG_DIR"
  if [[ "$(id -u)" -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "user 'postgres' missing (apt-get install postgresql creates it)"
    chown postgres:postgres "$PG_DIR"
  fi
  chmod 700 "$PG_DIR"
  as_owner "$BIN/initdb" -D "$DATA" -U postgres -A trust --no-sync -E UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
}

start_server() {
  local port="$1"
  local opts="-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
  opts+=" -c full_page_writes=off -c max_connections=200"
  as_owner "$BIN/pg_ctl" -D "$DATA" -l "$PG_DIR/server.log" -w -t 60 -o "$opts" start >/dev/null \
    || { tail -n 30 "$PG_DIR/server.log" >&2 || true; die "pg_ctl start failed"; }
  echo "$port" >"$PORT_FILE"
}

create_role_and_db() {
  local port="$1"
  as_owner "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$port" -U postgres -d postgres \
    -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'" \
    -c "CREATE DATABASE $DATABASE OWNER $ROLE" >/dev/null
}

# Proof that clients can reach it the way the tests will: TCP on 127.0.0.1 as the test role.
probe() {
  local port="$1"
  "$BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 10 || die "pg_isready: server on port $port is not accepting connections"
  local answer
  answer="$(PGPASSWORD=$PASSWORD "$BIN/psql" -X -tA -h 127.0.0.1 -p "$port" -U "$ROLE" -d "$DATABASE" -c 'SELECT 1')" \
    || die "psql could not run SELECT 1 on 127.0.0.1:$port"
  [[ "$answer" == "1" ]] || die "SELECT 1 answered '$answer'"
}

cmd_start() {
  if is_running; then
    log "already running in $PG_DIR"
  else
    local started port
    started=$(date +%s%N)
    init_cluster
    port="$(pick_port)"
    start_server "$port"
    create_role_and_db "$port"
    log "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') up on 127.0.0.1:$port in $(( ($(date +%s%N) - started) / 1000000 )) ms ($PG_DIR)"
  fi
  probe "$(cat "$PORT_FILE")"
  echo "export TEST_POSTGRES_URL='$(url)'"
}

cmd_stop() {
  if is_running; then
    as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    log "stopped ($PG_DIR)"
  fi
  rm -rf "$PG_DIR"
}

BIN="$(find_bin_dir)"
case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  url) url ;;
  status) if is_running; then echo "running: $(url)"; else echo "stopped"; exit 3; fi ;;
  *) echo "usage: scripts/postgres.sh start|stop|url|status" >&2; exit 2 ;;
esac
