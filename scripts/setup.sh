#!/usr/bin/env bash
# setup.sh: install and start what keyhole's tests, demo and benchmarks need,
# on a fresh Debian 12 machine of the project's kind (run as root).
# Idempotent: installs only what is missing, runs `apt-get update` only when
# it installs, starts services only when they are down. Safe to run often.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf 'setup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get and service starts need it)"

# --- Debian packages -------------------------------------------------------
# pgbouncer: the baseline in scripts/bench.sh. python3-psycopg2: the psycopg2
# client in internal/e2e (for /usr/bin/python3; a pyenv python on PATH does
# not see it, so tests call /usr/bin/python3). postgresql-client: psql and
# pgbench. pg_stat_statements ships in postgresql-15 itself on Debian 12 (no
# separate contrib package to install).
need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }
for p in pgbouncer python3-psycopg2; do
	have_pkg "$p" || need+=("$p")
done
{ command -v psql && command -v pgbench; } >/dev/null 2>&1 || need+=(postgresql-client)
# sqlsmith: random queries for the differential test (internal/differential).
command -v sqlsmith >/dev/null 2>&1 || need+=(sqlsmith)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ "${#need[@]}" -gt 0 ]; then
	log "installing: ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
	log "Debian packages present"
fi
# Debian's pgbouncer package starts a system instance on 6432 (the default
# listen port of keyhole too); keyhole's tools run their own pgbouncer, so the
# packaged one is stopped if it runs.
for pidfile in /run/postgresql/pgbouncer.pid /var/run/postgresql/pgbouncer.pid; do
	if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
		log "stopping the packaged pgbouncer service (it holds 127.0.0.1:6432)"
		/etc/init.d/pgbouncer stop >/dev/null 2>&1 || kill "$(cat "$pidfile")" 2>/dev/null || true
		break
	fi
done
/usr/bin/python3 -c 'import psycopg2' || die "python3-psycopg2 installed but /usr/bin/python3 cannot import it"

# --- node-postgres for internal/e2e ----------------------------------------
nodedir="$ROOT/internal/e2e/node"
if [ ! -d "$nodedir/node_modules/pg" ] || [ "$nodedir/package-lock.json" -nt "$nodedir/node_modules/.package-lock.json" ]; then
	log "npm ci in internal/e2e/node"
	(cd "$nodedir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
else
	log "node-postgres present"
fi

# --- services --------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
	for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
	return 1
}
if ! port_open 5432; then
	ver="$(ls /etc/postgresql | sort -V | tail -1)"
	log "starting PostgreSQL $ver"
	pg_ctlcluster --skip-systemctl-redirect "$ver" main start
	wait_port 5432 || die "PostgreSQL did not come up on 127.0.0.1:5432"
else
	log "PostgreSQL running"
fi
if ! port_open 3306; then
	if [ -x /usr/sbin/mariadbd ]; then
		log "starting MariaDB"
		mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
		start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
		wait_port 3306 || die "MariaDB did not come up on 127.0.0.1:3306"
	else
		log "warning: MariaDB is not installed (needed only by the MySQL tests)"
	fi
else
	log "MariaDB running"
fi

# --- Vault (built from source by scripts/vault.sh) -------------------------
if [ -f "$ROOT/scripts/vault.sh" ]; then
	bash "$ROOT/scripts/vault.sh" build
else
	log "scripts/vault.sh not present: skipping the Vault build"
fi

log "done"
