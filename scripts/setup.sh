#!/usr/bin/env bash
# setup.sh: install and start what keyhole's tests, demo and benchmarks need,
# on a fresh Debian 12 machine of the project's kind.
# It first checks what is missing; only installing packages and starting
# services need root (it uses sudo when it is not root and sudo works without
# a password, else it says what to run as root). When everything is present
# it runs as any user. Idempotent: installs only what is missing, runs
# `apt-get update` only when it installs, starts services only when they are
# down. Safe to run often.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf 'setup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# as_root runs a command as root: directly, or through passwordless sudo.
as_root() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		return 126
	fi
}
can_root() { [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
	for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
	return 1
}
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

# --- what is missing ---------------------------------------------------------
# pgbouncer: the baseline in scripts/bench.sh. python3-psycopg2,
# python3-psycopg (psycopg 3) and python3-asyncpg: the Python clients in
# internal/e2e (for /usr/bin/python3; a pyenv python on PATH does not see
# them, so tests call /usr/bin/python3). postgresql-client: psql,
# pgbench and pg_dump. libpostgresql-jdbc-java (/usr/share/java/postgresql.jar)
# and a JDK (java runs the e2e JDBC program from source, which needs the
# compiler): the pgJDBC metadata test. pg_stat_statements ships in
# postgresql-15 itself on Debian 12 (no separate contrib package to install).
# python3-pymysql (with python3-cryptography for caching_sha2_password's RSA
# exchange), python3-sqlalchemy, python3-django with python3-mysqldb
# (mysqlclient, Django's MySQL driver), libmariadb-java (MariaDB Connector/J,
# /usr/share/java/mariadb-java-client.jar), mariadb-client and sysbench: the
# MySQL clients and benchmark of mysqlproxy.
need=()
for p in pgbouncer python3-psycopg2 python3-psycopg python3-asyncpg libpostgresql-jdbc-java python3-pymysql python3-cryptography python3-sqlalchemy python3-django python3-mysqldb libmariadb-java sysbench; do
	have_pkg "$p" || need+=("$p")
done
{ command -v psql && command -v pgbench && command -v pg_dump; } >/dev/null 2>&1 || need+=(postgresql-client)
{ command -v java && command -v javac; } >/dev/null 2>&1 || need+=(default-jdk-headless)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
# sqlsmith: random queries for the differential test (internal/differential).
command -v sqlsmith >/dev/null 2>&1 || need+=(sqlsmith)
command -v node >/dev/null 2>&1 || need+=(nodejs)
# chromium: the console's real-browser test (gateway TestConsoleInBrowser,
# driven with chromedp).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(npm)

# Debian's pgbouncer package starts a system instance on 6432 (the default
# listen port of keyhole too); keyhole's tools run their own pgbouncer.
pgbouncer_pid=""
for pidfile in /run/postgresql/pgbouncer.pid /var/run/postgresql/pgbouncer.pid; do
	if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
		pgbouncer_pid="$(cat "$pidfile")"
		break
	fi
done

start_pg=0
port_open 5432 || start_pg=1
start_maria=0
if ! port_open 3306 && [ -x /usr/sbin/mariadbd ]; then start_maria=1; fi

root_work=()
[ "${#need[@]}" -gt 0 ] && root_work+=("install ${need[*]}")
[ -n "$pgbouncer_pid" ] && root_work+=("stop the packaged pgbouncer (pid $pgbouncer_pid, holds 127.0.0.1:6432)")
[ "$start_pg" = 1 ] && root_work+=("start PostgreSQL")
[ "$start_maria" = 1 ] && root_work+=("start MariaDB")
if [ "${#root_work[@]}" -gt 0 ] && ! can_root; then
	die "as $(id -un) this cannot: $(IFS=';'; echo "${root_work[*]}"). Run scripts/setup.sh as root once (or with passwordless sudo)."
fi

# --- Debian packages -------------------------------------------------------
if [ "${#need[@]}" -gt 0 ]; then
	log "installing: ${need[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
	log "Debian packages present"
fi
if [ -n "$pgbouncer_pid" ]; then
	log "stopping the packaged pgbouncer service (it holds 127.0.0.1:6432)"
	as_root /etc/init.d/pgbouncer stop >/dev/null 2>&1 || as_root kill "$pgbouncer_pid" 2>/dev/null || true
fi
/usr/bin/python3 -c 'import psycopg2' || die "python3-psycopg2 installed but /usr/bin/python3 cannot import it"
/usr/bin/python3 -c 'import psycopg, asyncpg' || die "python3-psycopg/python3-asyncpg installed but /usr/bin/python3 cannot import them"
/usr/bin/python3 -c 'import pymysql' || die "python3-pymysql installed but /usr/bin/python3 cannot import it"

# --- node-postgres and postgres.js for internal/e2e (no root needed) ---------
nodedir="$ROOT/internal/e2e/node"
if [ ! -d "$nodedir/node_modules/pg" ] || [ ! -d "$nodedir/node_modules/postgres" ] || [ "$nodedir/package-lock.json" -nt "$nodedir/node_modules/.package-lock.json" ]; then
	log "npm ci in internal/e2e/node"
	(cd "$nodedir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
else
	log "node-postgres and postgres.js present"
fi

# --- mysql2 and MariaDB Connector/Node for the MySQL client tests -------------
mynodedir="$ROOT/internal/e2e/mysql/node"
if [ ! -d "$mynodedir/node_modules/mysql2" ] || [ ! -d "$mynodedir/node_modules/mariadb" ] || [ "$mynodedir/package-lock.json" -nt "$mynodedir/node_modules/.package-lock.json" ]; then
	log "npm ci in internal/e2e/mysql/node"
	(cd "$mynodedir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
else
	log "mysql2 and mariadb (Connector/Node) present"
fi

# --- services --------------------------------------------------------------
if [ "$start_pg" = 1 ]; then
	ver="$(ls /etc/postgresql | sort -V | tail -1)"
	log "starting PostgreSQL $ver"
	as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
	wait_port 5432 || die "PostgreSQL did not come up on 127.0.0.1:5432"
else
	log "PostgreSQL running"
fi
if [ "$start_maria" = 1 ]; then
	log "starting MariaDB"
	as_root sh -c 'mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld' 2>/dev/null || true
	as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
	wait_port 3306 || die "MariaDB did not come up on 127.0.0.1:3306"
elif port_open 3306; then
	log "MariaDB running"
else
	log "warning: MariaDB is not installed (needed only by the MySQL tests)"
fi

# --- Vault (built from source by scripts/vault.sh; no root needed) -----------
bash "$ROOT/scripts/vault.sh" build

log "done"
