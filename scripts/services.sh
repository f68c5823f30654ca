#!/usr/bin/env bash
# Makes sure the servers the tests talk to are up: PostgreSQL on 127.0.0.1:5432 (trust auth,
# user postgres, database test), Redis on 127.0.0.1:6379, Redis with TLS on 127.0.0.1:6381 and
# PgBouncer on 127.0.0.1:6432; and that prometheus, promtool, chromium and chromedriver are installed. Starts them when they are
# installed but stopped, installs them with apt-get when they are missing (needs root).
# Also installs `promtool` (Debian package `prometheus`; no server is started), which the
# metrics exposition test runs on the rendered text.
set -euo pipefail

log() { echo "services: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  return 1
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  log "installing $* with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if ! port_open 5432; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      apt_install postgresql
    fi
    local ver; ver=$(ls /etc/postgresql | sort -V | tail -n1)
    local hba="/etc/postgresql/$ver/main/pg_hba.conf"
    if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
      log "allowing trust auth on 127.0.0.1 and ::1 in $hba (test machines only)"
      as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
    log "starting PostgreSQL $ver"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    wait_port 5432 || { log "PostgreSQL did not come up on 127.0.0.1:5432; see /var/log/postgresql/"; exit 1; }
  fi
  if ! psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
    log "creating database test"
    psql -h 127.0.0.1 -U postgres -d postgres -c 'create database test' >/dev/null \
      || { log "cannot reach database test as postgres on 127.0.0.1:5432 with trust auth"; exit 1; }
  fi
  ensure_password_role
  log "PostgreSQL ready on 127.0.0.1:5432"
}

# The backends' wrong-password test needs one role that authenticates with a password even
# though everything else uses trust: role poolguard_pw (password poolguard-secret), scram on
# 127.0.0.1, placed before the trust line. Only that role is affected. The credentials
# rotation test gets the same for its own role, creds11_rot (created and dropped by the
# test itself, which also rotates its password).
ensure_password_role() {
  local ver; ver=$(ls /etc/postgresql | sort -V | tail -n1)
  local hba="/etc/postgresql/$ver/main/pg_hba.conf"
  local role reload=
  for role in poolguard_pw creds11_rot; do
    if ! grep -qE "^host\s+all\s+$role\s" "$hba"; then
      log "adding scram auth for role $role in $hba (password tests)"
      as_root sed -i "1i host all $role 127.0.0.1/32 scram-sha-256" "$hba"
      reload=1
    fi
  done
  if [ -n "$reload" ]; then
    psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select pg_reload_conf()' >/dev/null
  fi
  psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -q >/dev/null <<'SQL' \
    || { log "cannot create role poolguard_pw"; exit 1; }
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'poolguard_pw') THEN
    CREATE ROLE poolguard_pw LOGIN PASSWORD 'poolguard-secret';
  END IF;
END $$;
SQL
}

ensure_redis() {
  if ! port_open 6379; then
    command -v redis-server >/dev/null || apt_install redis-server
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_port 6379 || { log "Redis did not come up on 127.0.0.1:6379; see /var/log/redis/ci.log"; exit 1; }
  fi
  log "Redis ready on 127.0.0.1:6379"
}

# A private PostgreSQL cluster on PORT (5440-5444) for tests that must change server-wide
# settings (ALTER SYSTEM, reloads), which is never done to the shared server: cluster
# poolguardPORT of the installed version, trust auth, listening on 127.0.0.1 only, fsync off.
# Idempotent. `pg-private-stop PORT` shuts it down in fast mode (sessions end with 57P01),
# `pg-private-drop PORT` stops and removes it.
private_cluster() {
  local port=$1
  case "$port" in 544[0-4]) ;; *) log "private cluster port must be 5440-5444, got '$port'"; exit 2 ;; esac
  local ver; ver=$(ls /etc/postgresql | sort -V | tail -n1)
  echo "$ver poolguard$port"
}
cluster_exists() { pg_lsclusters -h | awk -v v="$1" -v n="$2" '$1 == v && $2 == n { f = 1 } END { exit !f }'; }
ensure_private_postgres() {
  local ver name; read -r ver name <<<"$(private_cluster "$1")"
  command -v pg_createcluster >/dev/null || { log "pg_createcluster missing: run scripts/services.sh first"; exit 1; }
  if ! cluster_exists "$ver" "$name"; then
    as_root rm -rf "/etc/postgresql/$ver/$name"
    log "creating private PostgreSQL cluster $ver/$name on 127.0.0.1:$1"
    as_root pg_createcluster -q "$ver" "$name" -p "$1" --start-conf=manual -- --auth=trust >/dev/null
    printf "listen_addresses = '127.0.0.1'\nfsync = off\n" \
      | as_root tee "/etc/postgresql/$ver/$name/conf.d/poolguard.conf" >/dev/null
  fi
  if ! port_open "$1"; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start \
      || { log "private cluster $ver/$name did not start; see /var/log/postgresql/postgresql-$ver-$name.log"; exit 1; }
    wait_port "$1" || { log "private cluster $ver/$name is not listening on 127.0.0.1:$1"; exit 1; }
  fi
  psql -h 127.0.0.1 -p "$1" -U postgres -d postgres -Atc 'select 1' >/dev/null \
    || { log "cannot query the private cluster on 127.0.0.1:$1 as postgres"; exit 1; }
  log "private PostgreSQL ready on 127.0.0.1:$1"
}
stop_private_postgres() {
  local ver name; read -r ver name <<<"$(private_cluster "$1")"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" stop -m fast \
    || { log "cannot stop private cluster $ver/$name"; exit 1; }
  log "private cluster $ver/$name stopped (fast shutdown)"
}
drop_private_postgres() {
  local ver name; read -r ver name <<<"$(private_cluster "$1")"
  if cluster_exists "$ver" "$name"; then
    as_root pg_dropcluster --stop "$ver" "$name"
    as_root rm -rf "/etc/postgresql/$ver/$name"
    log "private cluster $ver/$name dropped"
  fi
}

# PgBouncer on 127.0.0.1:6432 in transaction pooling mode in front of the shared server
# (databases test and test_pause -> test on 127.0.0.1:5432; the second one is the one tests
# PAUSE, so the others keep running), trust auth, admin console user postgres (database
# pgbouncer). Every server session is reset (DISCARD ALL) when a transaction releases it, so
# nothing one client leaves on a server session reaches another, and a named prepared
# statement never survives to its next message (the tests rely on that). Config, log and pid
# under /var/lib/poolguard-pgbouncer; runs as user postgres (PgBouncer refuses root).
# Idempotent.
PGB_DIR=/var/lib/poolguard-pgbouncer
ensure_pgbouncer() {
  command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || apt_install pgbouncer
  local bin; bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
  if ! port_open 6432; then
    as_root mkdir -p "$PGB_DIR"
    as_root tee "$PGB_DIR/pgbouncer.ini" >/dev/null <<INI
[databases]
test = host=127.0.0.1 port=5432 dbname=test
test_pause = host=127.0.0.1 port=5432 dbname=test
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 6432
unix_socket_dir =
auth_type = trust
auth_file = $PGB_DIR/userlist.txt
admin_users = postgres
pool_mode = transaction
max_client_conn = 200
default_pool_size = 8
ignore_startup_parameters = extra_float_digits,options
server_reset_query = DISCARD ALL
server_reset_query_always = 1
server_login_retry = 1
logfile = $PGB_DIR/pgbouncer.log
pidfile = $PGB_DIR/pgbouncer.pid
INI
    echo '"postgres" ""' | as_root tee "$PGB_DIR/userlist.txt" >/dev/null
    as_root chown -R postgres:postgres "$PGB_DIR"
    log "starting PgBouncer on 127.0.0.1:6432 (transaction pooling)"
    as_root su -s /bin/sh postgres -c "$bin -d $PGB_DIR/pgbouncer.ini" \
      || { log "PgBouncer did not start; see $PGB_DIR/pgbouncer.log"; exit 1; }
    wait_port 6432 || { log "PgBouncer is not listening on 127.0.0.1:6432; see $PGB_DIR/pgbouncer.log"; exit 1; }
  fi
  psql -h 127.0.0.1 -p 6432 -U postgres -d test_pause -Atc 'select 1' >/dev/null \
    || { log "cannot query database test through PgBouncer on 127.0.0.1:6432; see $PGB_DIR/pgbouncer.log"; exit 1; }
  log "PgBouncer ready on 127.0.0.1:6432"
}

# A second Redis that speaks only TLS, on 127.0.0.1:6381, for the `tls` feature's tests. Its
# certificates are generated once with openssl into /var/lib/redis-tls: a test CA (ca.crt), a
# server certificate for 127.0.0.1 and localhost signed by it, and an unrelated CA
# (other-ca.crt) for the wrong-CA test. Test machines only: the keys are not protected.
REDIS_TLS_PORT=6381
REDIS_TLS_DIR=/var/lib/redis-tls
ensure_redis_tls() {
  local d=$REDIS_TLS_DIR
  if ! [ -s "$d/server.crt" ] || ! [ -s "$d/other-ca.crt" ]; then
    command -v openssl >/dev/null || apt_install openssl
    log "generating a test CA and server certificate in $d"
    as_root mkdir -p "$d"
    local tmp; tmp=$(mktemp -d)
    (
      cd "$tmp"
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=poolguard test CA" \
        -keyout ca.key -out ca.crt 2>/dev/null
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=poolguard unrelated CA" \
        -keyout other-ca.key -out other-ca.crt 2>/dev/null
      openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout server.key -out server.csr 2>/dev/null
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
      openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile ext.cnf -out server.crt 2>/dev/null
    ) || { log "openssl failed to generate the test certificates"; exit 1; }
    as_root cp "$tmp/ca.crt" "$tmp/ca.key" "$tmp/other-ca.crt" "$tmp/server.key" "$tmp/server.crt" "$d/"
    as_root chmod 644 "$d/ca.crt" "$d/other-ca.crt" "$d/server.crt"
    rm -rf "$tmp"
  fi
  if ! port_open $REDIS_TLS_PORT; then
    command -v redis-server >/dev/null || apt_install redis-server
    log "starting Redis with TLS on 127.0.0.1:$REDIS_TLS_PORT"
    mkdir -p /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 --port 0 --tls-port $REDIS_TLS_PORT \
      --tls-cert-file "$d/server.crt" --tls-key-file "$d/server.key" \
      --tls-ca-cert-file "$d/ca.crt" --tls-auth-clients no \
      --save "" --appendonly no --dir "$d" --logfile /var/log/redis/ci-tls.log \
      --pidfile /run/redis-tls.pid
    wait_port $REDIS_TLS_PORT \
      || { log "Redis with TLS did not come up on 127.0.0.1:$REDIS_TLS_PORT; see /var/log/redis/ci-tls.log"; exit 1; }
  fi
  log "Redis with TLS ready on 127.0.0.1:$REDIS_TLS_PORT (CA: $d/ca.crt)"
}

# Prometheus' server and promtool (Debian package prometheus) for the deploy tests: they check
# and unit-test the shipped rules and start their own private server on a loopback port
# (9091 and up) with a temporary data directory. Nothing is started here.
# Prometheus and promtool (Debian package `prometheus`): promtool checks the metrics text and
# the rules; the tests start their own private server on loopback. The package's own service
# (which would listen on every interface) is disabled and stopped right after install.
ensure_prometheus() {
  if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    apt_install prometheus
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
      as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    pkill -x prometheus 2>/dev/null || true
  fi
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
    || { log "prometheus and promtool are still missing after installing the Debian package prometheus"; exit 1; }
  log "Prometheus ready: $(prometheus --version 2>&1 | head -n1)"
}

# Headless Chromium and its WebDriver server (Debian packages chromium and chromium-driver) for
# the browser tests of the diagnostics dashboard: the tests start their own chromedriver on a
# loopback port with a fresh profile directory. Nothing is started here.
ensure_chromium() {
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    apt_install chromium chromium-driver
  fi
  command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 \
    || { log "chromium and chromedriver are still missing after installing the Debian packages chromium and chromium-driver"; exit 1; }
  log "Chromium ready: $(chromium --version 2>/dev/null | head -n1); $(chromedriver --version 2>/dev/null | head -n1)"
}

case "${1:-all}" in
  all) ensure_postgres; ensure_redis; ensure_redis_tls; ensure_pgbouncer; ensure_prometheus; ensure_chromium ;;
  prometheus|promtool) ensure_prometheus ;;
  chromium|chromedriver) ensure_chromium ;;
  pg-private) ensure_postgres; ensure_private_postgres "${2:?port}" ;;
  pg-private-stop) stop_private_postgres "${2:?port}" ;;
  pg-private-drop) drop_private_postgres "${2:?port}" ;;
  pgbouncer) ensure_postgres; ensure_pgbouncer ;;
  redis-tls) ensure_redis_tls ;;
  *) log "usage: $0 [all | pg-private PORT | pg-private-stop PORT | pg-private-drop PORT | pgbouncer | redis-tls | prometheus | chromium]"; exit 2 ;;
esac
