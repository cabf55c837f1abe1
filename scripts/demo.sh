#!/usr/bin/env bash
# demo.sh: keyhole in two minutes. Builds keyhole, loads a small labelled
# shop database, mints an agent token, starts keyhole in front of the
# database and plays a short agent session through it with psql: what the
# policy allows comes back, what it does not is refused with SQLSTATE 42501,
# a reason and a hint. Then shows the blocked statements from the audit log.
# When MariaDB (or MySQL) runs on 127.0.0.1:3306 with a root login without
# a password, the same for a MySQL agent with the mariadb client: errors
# 1143 (column) and 1142 (table).
#
#   scripts/demo.sh           # run the demo, then stop keyhole and clean up
#   scripts/demo.sh --keep    # leave keyhole running to try it yourself
#
# Uses Postgres on 127.0.0.1:5432 (superuser postgres) when it is up;
# otherwise starts a throwaway cluster from the installed binaries (initdb,
# pg_ctl) on a free port in a temporary directory (KEYHOLE_DEMO_THROWAWAY_PG=1
# forces that). KEYHOLE_DEMO_MYSQL=0 skips the MySQL part.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KEEP=0
for a in "$@"; do
	case $a in
	--keep) KEEP=1 ;;
	-h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "demo: unknown argument $a (try --help)" >&2; exit 2 ;;
	esac
done

# The demo's own database and login, with fresh names: it drops only what
# it created.
SUFFIX="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
DB="keyhole_demo_$SUFFIX"
LOGIN="keyhole_demo_$SUFFIX"
CREATED_DB=0 CREATED_LOGIN=0
# The MySQL part's database (and its _internal twin, which the fixture
# fills) and login, likewise.
MY_DB="keyhole_demo_$SUFFIX"
MY_LOGIN="keyhole_demo_$SUFFIX"
MY_PW="demo-$SUFFIX-$RANDOM$RANDOM"
MY_CREATED_DB=0 MY_CREATED_LOGIN=0 MY_KEYHOLE_PID=""
AGENT=sales-summarizer
bold() { if [ -t 1 ]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
say() { printf '\n'; bold "== $*"; }
die() { echo "demo: error: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 150); do port_open "$1" && return 0; sleep 0.2; done; return 1; }
for tool in go psql python3; do command -v "$tool" >/dev/null 2>&1 || die "$tool not found (scripts/setup.sh installs the clients)"; done

WORK="$(mktemp -d /tmp/keyhole-demo.XXXXXX)"
chmod 755 "$WORK"
KEYHOLE_PID="" PGDATA_TMP="" PG_CTL=""
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# my_admin: the MariaDB root login (never the agent's password from the
# environment).
my_admin() { env -u MYSQL_PWD mariadb --no-defaults -h 127.0.0.1 -P 3306 -u root --batch --skip-column-names "$@"; }
cleanup() {
	if [ "$KEEP" = 1 ]; then return; fi
	[ -n "$KEYHOLE_PID" ] && kill "$KEYHOLE_PID" 2>/dev/null && wait "$KEYHOLE_PID" 2>/dev/null || true
	[ -n "$MY_KEYHOLE_PID" ] && kill "$MY_KEYHOLE_PID" 2>/dev/null && wait "$MY_KEYHOLE_PID" 2>/dev/null || true
	[ "$MY_CREATED_DB" = 1 ] && my_admin -e "DROP DATABASE IF EXISTS \`$MY_DB\`; DROP DATABASE IF EXISTS \`${MY_DB}_internal\`" >/dev/null 2>&1 || true
	[ "$MY_CREATED_LOGIN" = 1 ] && my_admin -e "DROP USER IF EXISTS '$MY_LOGIN'@'%'" >/dev/null 2>&1 || true
	if [ -n "$PGDATA_TMP" ]; then
		as_pg "$PG_CTL" -D "$PGDATA_TMP" -m fast stop >/dev/null 2>&1 || true
	elif [ -n "${PGPORT:-}" ]; then
		[ "$CREATED_DB" = 1 ] && psql -X -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
		[ "$CREATED_LOGIN" = 1 ] && psql -X -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -c "DROP ROLE IF EXISTS $LOGIN" >/dev/null 2>&1 || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

say "Building keyhole"
(cd "$ROOT" && go build -o bin/keyhole ./cmd/keyhole)
KEYHOLE="$ROOT/bin/keyhole"
echo "bin/keyhole"

say "Upstream Postgres"
if port_open 5432 && [ -z "${KEYHOLE_DEMO_THROWAWAY_PG:-}" ]; then
	PGPORT=5432
	echo "using the running Postgres on 127.0.0.1:5432"
else
	INITDB="$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)"
	[ -n "$INITDB" ] || die "no Postgres on 127.0.0.1:5432 and no initdb to start one (apt-get install postgresql)"
	PG_CTL="$(dirname "$INITDB")/pg_ctl"
	[ -x "$PG_CTL" ] || PG_CTL="$(command -v pg_ctl)"
	PGPORT="$(free_port)"
	PGDATA_TMP="$WORK/pgdata"
	mkdir -p "$PGDATA_TMP"
	[ "$(id -u)" = 0 ] && chown postgres "$PGDATA_TMP"
	as_pg "$INITDB" -D "$PGDATA_TMP" -U postgres -A trust >/dev/null
	as_pg "$PG_CTL" -D "$PGDATA_TMP" -l "$PGDATA_TMP/server.log" -o "-p $PGPORT -k $PGDATA_TMP -c listen_addresses=127.0.0.1" -w start >/dev/null
	echo "started a throwaway cluster on 127.0.0.1:$PGPORT ($PGDATA_TMP)"
fi
export PGPORT
admin() { PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"; }
admin -d postgres -c "CREATE ROLE $LOGIN LOGIN" >/dev/null
CREATED_LOGIN=1
admin -d postgres -c "CREATE DATABASE $DB" >/dev/null
CREATED_DB=1
admin -d "$DB" -f "$ROOT/testdata/pg/shop.sql" >/dev/null
admin -d "$DB" -c "GRANT USAGE ON SCHEMA public TO $LOGIN; GRANT ALL ON ALL TABLES IN SCHEMA public TO $LOGIN; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO $LOGIN" >/dev/null
echo "database $DB: customers (email, ssn labelled pii), orders, products, secrets (labelled secret)"
echo "keyhole logs in as $LOGIN, which may do anything to these tables: the policy is what stops the agent"

say "Policy (examples/policy.yaml)"
cp "$ROOT/examples/policy.yaml" "$WORK/policy.yaml"
grep -v '^#' "$WORK/policy.yaml" | sed '/^$/d'

say "Agent token for $AGENT"
"$KEYHOLE" token keygen --out "$WORK/token.key" >/dev/null
TOKEN="$("$KEYHOLE" token mint --token-key "$WORK/token.key" --agent "$AGENT" --ttl 8h 2>/dev/null)" || die "keyhole token mint failed"
echo "keyhole token mint --agent $AGENT --ttl 8h  ->  ${TOKEN:0:24}... (a signed JWT; the agent's password)"

say "Starting keyhole"
KH_PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
"$KEYHOLE" serve --upstream "postgres://$LOGIN@127.0.0.1:$PGPORT/$DB" \
	--policy "$WORK/policy.yaml" --token-key "$WORK/token.key.pub" --audit "$WORK/audit.jsonl" \
	--listen-postgres "127.0.0.1:$KH_PORT" --admin "127.0.0.1:$ADMIN_PORT" --log-format text 2>"$WORK/keyhole.log" &
KEYHOLE_PID=$!
wait_port "$KH_PORT" || { cat "$WORK/keyhole.log" >&2; die "keyhole did not start"; }
echo "keyhole on 127.0.0.1:$KH_PORT (admin http://127.0.0.1:$ADMIN_PORT/metrics), pid $KEYHOLE_PID"

CONN="host=127.0.0.1 port=$KH_PORT user=$AGENT dbname=$DB sslmode=require"
agent() {
	printf '\nagent> %s\n' "$1"
	PGPASSWORD="$TOKEN" psql -X -v VERBOSITY=verbose "$CONN" -c "$1" 2>&1 | sed 's/^/  /' || true
}
say "An agent session through keyhole (psql)"
agent "SELECT id, name FROM customers ORDER BY id"
agent "SELECT c.name, count(*) AS orders, sum(o.total) AS spent FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.name ORDER BY spent DESC"
agent "SELECT name, email FROM customers"
agent "SELECT * FROM secrets"
agent "DELETE FROM orders"
printf '\n  rows still in orders, counted directly (not through keyhole): '
admin -d "$DB" -Atc "SELECT count(*) FROM orders"
agent "SELECT pg_read_file('/etc/passwd')"
agent "INSERT INTO orders (id, customer_id, product_id, total) VALUES (5001, 2, 1, 49.90) RETURNING id, status"

say "Blocked statements (keyhole audit --blocked)"
sleep 0.5
"$KEYHOLE" audit "$WORK/audit.jsonl" --blocked

# --- MySQL / MariaDB ------------------------------------------------------
MY_KH_PORT=""
if [ "${KEYHOLE_DEMO_MYSQL:-1}" != 0 ] && command -v mariadb >/dev/null 2>&1 && port_open 3306 && my_admin -e "SELECT 1" >/dev/null 2>&1; then
	say "Upstream MariaDB"
	echo "using the running server on 127.0.0.1:3306: $(my_admin -e 'SELECT VERSION()')"
	# The fixture and the example policy name the databases shop and
	# shop_internal: the demo's have their own names.
	rename() {
		local word='(^|[^A-Za-z0-9_$])shop([^A-Za-z0-9_$]|$)'
		sed -E "s/shop_internal/${MY_DB}_internal/g; s/$word/\1${MY_DB}\2/g; s/$word/\1${MY_DB}\2/g" "$1"
	}
	my_admin -e "CREATE DATABASE \`$MY_DB\`; CREATE DATABASE \`${MY_DB}_internal\`"
	MY_CREATED_DB=1
	my_admin -e "CREATE USER '$MY_LOGIN'@'%' IDENTIFIED BY '$MY_PW'; GRANT ALL ON \`$MY_DB\`.* TO '$MY_LOGIN'@'%'"
	MY_CREATED_LOGIN=1
	rename "$ROOT/testdata/mysql/shop.sql" | my_admin "$MY_DB"
	echo "database $MY_DB: the same shop (customers.email and .ssn labelled pii in the policy, .phone by its column comment)"
	echo "keyhole logs in as $MY_LOGIN, which may do anything in $MY_DB: the policy is what stops the agent"

	say "Policy (examples/policy-mysql.yaml: database.table names)"
	rename "$ROOT/examples/policy-mysql.yaml" >"$WORK/policy-mysql.yaml"
	sed 's/ *#.*//; /^$/d' "$WORK/policy-mysql.yaml"

	say "Starting keyhole for MySQL agents"
	MY_KH_PORT="$(free_port)"
	MYSQL_PWD="$MY_PW" "$KEYHOLE" serve --upstream "mysql://$MY_LOGIN@127.0.0.1:3306/$MY_DB" \
		--policy "$WORK/policy-mysql.yaml" --token-key "$WORK/token.key.pub" --audit "$WORK/audit-mysql.jsonl" \
		--listen-mysql "127.0.0.1:$MY_KH_PORT" --log-format text 2>"$WORK/keyhole-mysql.log" &
	MY_KEYHOLE_PID=$!
	wait_port "$MY_KH_PORT" || { cat "$WORK/keyhole-mysql.log" >&2; die "keyhole (MySQL) did not start"; }
	echo "keyhole on 127.0.0.1:$MY_KH_PORT (MySQL protocol), pid $MY_KEYHOLE_PID; the agent's token is the same"

	my_agent() {
		printf '\nagent> %s\n' "$1"
		MYSQL_PWD="$TOKEN" mariadb --no-defaults -h 127.0.0.1 -P "$MY_KH_PORT" --protocol=TCP -u "$AGENT" --table "$MY_DB" -e "$1" 2>&1 | sed 's/^/  /' || true
	}
	say "An agent session through keyhole (mariadb client)"
	my_agent "SELECT id, name FROM customers ORDER BY id"
	my_agent "SELECT c.name, count(*) AS orders, sum(o.total) AS spent FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.name ORDER BY spent DESC"
	my_agent "SELECT name, email FROM customers"
	my_agent "SELECT * FROM secrets"
	my_agent "DELETE FROM orders"
	printf '\n  rows still in orders, counted directly (not through keyhole): '
	my_admin "$MY_DB" -e "SELECT count(*) FROM orders"
	my_agent "SELECT LOAD_FILE('/etc/passwd')"
	my_agent "INSERT INTO orders (customer_id, product_id, total) VALUES (2, 1, 49.90)"

	say "Blocked MySQL statements (keyhole audit --blocked)"
	sleep 0.5
	"$KEYHOLE" audit "$WORK/audit-mysql.jsonl" --blocked
else
	say "MySQL"
	echo "no MariaDB/MySQL with a passwordless root on 127.0.0.1:3306 (or no mariadb client): skipping the MySQL agent session"
fi

say "Connect as an agent"
cat <<EOF
  An agent uses any Postgres client; only host, port, user and password change:
    PGPASSWORD=<token from keyhole token mint> psql "host=127.0.0.1 port=$KH_PORT user=$AGENT dbname=$DB sslmode=require"
EOF
if [ -n "$MY_KH_PORT" ]; then
	cat <<EOF
  or any MySQL client, with the token as the password:
    MYSQL_PWD=<token> mariadb -h 127.0.0.1 -P $MY_KH_PORT --protocol=TCP -u $AGENT $MY_DB
EOF
fi

if [ "$KEEP" = 1 ]; then
	cat <<EOF

keyhole keeps running (pid $KEYHOLE_PID). Try it:
  PGPASSWORD=\$($KEYHOLE token mint --token-key $WORK/token.key --agent $AGENT --ttl 1h) \\
    psql "host=127.0.0.1 port=$KH_PORT user=$AGENT dbname=$DB sslmode=require"
Stop it with: kill $KEYHOLE_PID${MY_KEYHOLE_PID:+ $MY_KEYHOLE_PID}${PGDATA_TMP:+; then $PG_CTL -D $PGDATA_TMP stop}
(then drop the demo's database $DB and login $LOGIN${MY_KEYHOLE_PID:+, and in MariaDB the databases $MY_DB and ${MY_DB}_internal and the user $MY_LOGIN})
Files: $WORK (policy.yaml: edit it and keyhole reloads; audit.jsonl; keyhole.log)
EOF
else
	echo
	echo "(stopping keyhole and cleaning up; run with --keep to leave it running)"
fi
