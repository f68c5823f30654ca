#!/usr/bin/env bash
# The mixed fault soak: PostgreSQL restarts and SIGSTOP freezes, Redis client kills, crashes and
# DEBUG SLEEP, random task aborts, drops inside BEGIN/MULTI, panics while holding, cancelled gets
# and cancelled blocking commands, all at seeded random times, against REAL servers, for the
# given number of minutes (default 1). Prints one table and exits non-zero when a check fails
# (a hung request, a dirty handover, a leak, a pool above max_size, ...).
#
# It never touches the shared servers on 5432/6379: it creates its own PostgreSQL cluster
# (pg_createcluster, cluster `poolguard-soak`) and its own redis-server, and stops and removes
# both at the end, also on failure or Ctrl-C. Needs root (pg_createcluster, SIGSTOP of the
# cluster's processes); installs postgresql / redis-server with apt-get only if missing.
#
# Usage: scripts/soak.sh [minutes]
# Environment: SOAK_PG_PORT (5450), SOAK_REDIS_PORT (6390), SOAK_SEED (random, printed),
#              SOAK_ARGS (extra arguments for the driver, see `poolguard-soak --help`),
#              SOAK_BUILD (the cargo arguments that build the driver; scripts/test.sh passes
#              `build --workspace --all-features --bins`, the feature set of its test build,
#              so the libraries are not compiled again).
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES="${1:-1}"
PG_PORT="${SOAK_PG_PORT:-5450}"
REDIS_PORT="${SOAK_REDIS_PORT:-6390}"
SEED="${SOAK_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
CLUSTER=poolguard-soak
DB=soak
OWN_CLUSTER=0 # set once this run owns the cluster (cleanup removes only its own)

log() { echo "soak: $*" >&2; }
die() { log "FAILED: $*"; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  return 1
}
apt_install() {
  log "installing $* with apt-get"
  env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
# Runs a command; on failure names it and stops the soak (never a silent skip).
must() { "$@" || die "command failed: $*"; }

case "$MINUTES" in
  ''|*[!0-9.]*) die "minutes must be a number, got '$MINUTES' (usage: scripts/soak.sh [minutes])" ;;
esac
for p in "$PG_PORT" "$REDIS_PORT"; do
  case "$p" in 5432|6379) die "port $p is a shared server's; the soak restarts and freezes its servers, so give it private ports (SOAK_PG_PORT, SOAK_REDIS_PORT)" ;; esac
done
# The driver signals the cluster's processes (owned by postgres) and restarts it.
[ "$(id -u)" = 0 ] || die "needs root (pg_createcluster, pg_ctlcluster, kill -STOP/-CONT of the soak cluster's processes): run it as root"

command -v pg_createcluster >/dev/null || apt_install postgresql
command -v redis-server >/dev/null || apt_install redis-server
PG_VERSION=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
[ -n "$PG_VERSION" ] || die "no PostgreSQL version under /etc/postgresql after installing postgresql"
PG_DATA="/var/lib/postgresql/$PG_VERSION/$CLUSTER"
WORK=$(mktemp -d /tmp/poolguard-soak.XXXXXX)
REDIS_CONF="$WORK/redis.conf"
REDIS_PID="$WORK/redis.pid"

# Resumes every process of the soak cluster (a driver killed mid-freeze leaves them stopped).
pg_resume() {
  local pm
  pm=$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null) || return 0
  [ -n "$pm" ] || return 0
  kill -CONT "$pm" 2>/dev/null || true
  for c in $(ps -o pid= --ppid "$pm" 2>/dev/null); do kill -CONT "$c" 2>/dev/null || true; done
}
drop_cluster() {
  if pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -x "$PG_VERSION $CLUSTER" >/dev/null; then
    pg_resume
    pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$CLUSTER" stop -m immediate >/dev/null 2>&1 || true
    pg_dropcluster "$PG_VERSION" "$CLUSTER" >/dev/null 2>&1 \
      || log "could not remove cluster $PG_VERSION/$CLUSTER (remove it with: pg_dropcluster --stop $PG_VERSION $CLUSTER)"
  fi
  # pg_dropcluster leaves the settings file the soak added (conf.d/soak.conf) behind.
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -x "$PG_VERSION $CLUSTER" >/dev/null; then
    rm -rf "/etc/postgresql/$PG_VERSION/$CLUSTER"
  fi
}
stop_redis() {
  local pid
  pid=$(cat "$REDIS_PID" 2>/dev/null) || return 0
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" != 0 ] && [ -f "/var/log/postgresql/postgresql-$PG_VERSION-$CLUSTER.log" ]; then
    log "last lines of the soak cluster's log:"
    tail -n 15 "/var/log/postgresql/postgresql-$PG_VERSION-$CLUSTER.log" >&2 || true
  fi
  stop_redis
  [ "$OWN_CLUSTER" = 1 ] && drop_cluster
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# PostgreSQL: a throwaway cluster on its own port, trust auth on 127.0.0.1, no durability.
if pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2" "$4}' | grep -x "$PG_VERSION $CLUSTER online" >/dev/null; then
  die "cluster $PG_VERSION/$CLUSTER is running: another soak is under way, or one was killed; remove it with: pg_dropcluster --stop $PG_VERSION $CLUSTER (a killed run may have left its processes stopped: kill -CONT the pid in $PG_DATA/postmaster.pid and its children first)"
fi
drop_cluster # a stopped one, left over from an interrupted run
OWN_CLUSTER=1
port_open "$PG_PORT" && die "port $PG_PORT is already in use; pick another with SOAK_PG_PORT"
port_open "$REDIS_PORT" && die "port $REDIS_PORT is already in use; pick another with SOAK_REDIS_PORT"
log "creating PostgreSQL $PG_VERSION cluster $CLUSTER on 127.0.0.1:$PG_PORT"
must pg_createcluster -q --start-conf=manual -p "$PG_PORT" \
  "$PG_VERSION" "$CLUSTER" -- --auth-local=trust --auth-host=trust >/dev/null
tee "/etc/postgresql/$PG_VERSION/$CLUSTER/conf.d/soak.conf" >/dev/null <<EOF || die "cannot write the soak cluster's settings"
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
shared_buffers = '32MB'
# Not the ERRORs the soak provokes (SELECT 1/0); startup, shutdown and FATALs stay.
log_min_messages = log
EOF
must pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$CLUSTER" start
wait_port "$PG_PORT" || die "PostgreSQL did not come up on 127.0.0.1:$PG_PORT (pg_ctlcluster $PG_VERSION $CLUSTER start); see /var/log/postgresql/postgresql-$PG_VERSION-$CLUSTER.log"
must psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "create database $DB"

# Redis: no persistence, DEBUG allowed from loopback only (for DEBUG SLEEP).
cat >"$REDIS_CONF" <<EOF
port $REDIS_PORT
bind 127.0.0.1
daemonize yes
pidfile $REDIS_PID
logfile $WORK/redis.log
dir $WORK
save ""
appendonly no
enable-debug-command local
EOF
log "starting redis-server on 127.0.0.1:$REDIS_PORT"
must redis-server "$REDIS_CONF"
wait_port "$REDIS_PORT" || die "redis-server did not come up on 127.0.0.1:$REDIS_PORT (redis-server $REDIS_CONF); see $WORK/redis.log"

BUILD="${SOAK_BUILD:-build -p poolguard-testkit --features soak --bin poolguard-soak}"
log "building the driver (cargo $BUILD)"
# shellcheck disable=SC2086 # BUILD is a list of arguments
must cargo $BUILD -q
BIN="${CARGO_TARGET_DIR:-target}/debug/poolguard-soak"

log "running for $MINUTES min, seed $SEED (rerun with SOAK_SEED=$SEED)"
# shellcheck disable=SC2086 # SOAK_ARGS is a list of arguments
"$BIN" --minutes "$MINUTES" --seed "$SEED" \
  --pg "host=127.0.0.1 port=$PG_PORT user=postgres dbname=$DB" \
  --pg-cluster "$PG_VERSION/$CLUSTER" --pg-pidfile "$PG_DATA/postmaster.pid" \
  --redis "redis://127.0.0.1:$REDIS_PORT/0" --redis-conf "$REDIS_CONF" --redis-pidfile "$REDIS_PID" \
  ${SOAK_ARGS:-}
