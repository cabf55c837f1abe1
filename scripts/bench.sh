#!/usr/bin/env bash
# bench.sh: end-to-end throughput of keyhole against a direct connection and
# PgBouncer (session mode), with pgbench's select-only script (-S) at 8
# clients, in simple and prepared protocol. Targets are measured in
# alternating rounds so that drift on a shared machine hits all of them.
#
#   scripts/bench.sh                 # 3 rounds x 10s per target and mode
#   BENCH_SECONDS=5 BENCH_ROUNDS=2 scripts/bench.sh
#
# Needs: Postgres on 127.0.0.1:5432 (superuser postgres, trust), pgbench,
# pgbouncer (scripts/setup.sh installs them). All connections are plain TCP
# on loopback (BENCH_SSLMODE, default disable), so the figures compare the
# proxies and not TLS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
ROUNDS="${BENCH_ROUNDS:-3}"
CLIENTS="${BENCH_CLIENTS:-8}"
THREADS="${BENCH_THREADS:-2}"
SCALE="${BENCH_SCALE:-5}"
SSLMODE="${BENCH_SSLMODE:-disable}"
PGADMIN_HOST=127.0.0.1 PGADMIN_PORT=5432 PGADMIN_USER=postgres
DB=keyhole_bench
LOGIN=keyhole_bench
AGENT=bench-agent

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
for tool in pgbench psql pgbouncer go; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/setup.sh"
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {
	for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
	return 1
}
psql_admin() { PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -h "$PGADMIN_HOST" -p "$PGADMIN_PORT" -U "$PGADMIN_USER" "$@"; }

WORK="$(mktemp -d /tmp/keyhole-bench.XXXXXX)"
KEYHOLE_PID="" BOUNCER_PID=""
cleanup() {
	[ -n "$KEYHOLE_PID" ] && kill "$KEYHOLE_PID" 2>/dev/null && wait "$KEYHOLE_PID" 2>/dev/null || true
	[ -n "$BOUNCER_PID" ] && kill "$BOUNCER_PID" 2>/dev/null || true
	psql_admin -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT

log "building keyhole"
(cd "$ROOT" && go build -o bin/keyhole ./cmd/keyhole)
KEYHOLE="$ROOT/bin/keyhole"

log "creating $DB (pgbench -i -s $SCALE)"
psql_admin -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
psql_admin -d postgres -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$LOGIN') THEN CREATE ROLE $LOGIN LOGIN; END IF; END\$\$" >/dev/null
psql_admin -d postgres -c "CREATE DATABASE $DB" >/dev/null
pgbench -i -q -s "$SCALE" -h "$PGADMIN_HOST" -p "$PGADMIN_PORT" -U "$PGADMIN_USER" "$DB" >/dev/null 2>&1
psql_admin -d "$DB" -c "GRANT ALL ON ALL TABLES IN SCHEMA public TO $LOGIN" >/dev/null

# PgBouncer, session mode, as the postgres OS user (it refuses to run as root).
BOUNCER_PORT="$(free_port)"
chmod 755 "$WORK"
cat >"$WORK/pgbouncer.ini" <<EOF
[databases]
$DB = host=$PGADMIN_HOST port=$PGADMIN_PORT dbname=$DB
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 20
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
EOF
printf '"%s" ""\n' "$LOGIN" >"$WORK/userlist.txt"
chmod 644 "$WORK/pgbouncer.ini" "$WORK/userlist.txt"
if [ "$(id -u)" = 0 ]; then
	touch "$WORK/pgbouncer.log" && chown postgres "$WORK/pgbouncer.log" && chown postgres "$WORK"
	runuser -u postgres -- pgbouncer -d "$WORK/pgbouncer.ini"
else
	pgbouncer -d "$WORK/pgbouncer.ini"
fi
wait_port "$BOUNCER_PORT" || die "pgbouncer did not start: $(cat "$WORK/pgbouncer.log")"
BOUNCER_PID="$(cat "$WORK/pgbouncer.pid")"

# keyhole, with a policy that allows pgbench's select-only script.
cat >"$WORK/policy.yaml" <<EOF
roles:
  bench:
    upstream: bench
    allow:
      - select: [public.pgbench_accounts, public.pgbench_branches, public.pgbench_tellers, public.pgbench_history]
agents:
  $AGENT: {role: bench}
EOF
"$KEYHOLE" token keygen --out "$WORK/token.key" >/dev/null
TOKEN="$("$KEYHOLE" token mint --key "$WORK/token.key" --agent "$AGENT" --ttl 2h 2>/dev/null)" || die "keyhole token mint failed"
KEYHOLE_PORT="$(free_port)"
"$KEYHOLE" serve --upstream "postgres://$LOGIN@$PGADMIN_HOST:$PGADMIN_PORT/$DB" \
	--policy "$WORK/policy.yaml" --token-key "$WORK/token.key.pub" --audit "$WORK/audit.jsonl" \
	--listen-postgres "127.0.0.1:$KEYHOLE_PORT" --log-level warn 2>"$WORK/keyhole.log" &
KEYHOLE_PID=$!
wait_port "$KEYHOLE_PORT" || die "keyhole did not start: $(cat "$WORK/keyhole.log")"

# run TARGET MODE -> prints tps
run() {
	local target=$1 mode=$2 port user pass=""
	case $target in
	direct) port=$PGADMIN_PORT user=$LOGIN ;;
	pgbouncer) port=$BOUNCER_PORT user=$LOGIN ;;
	keyhole) port=$KEYHOLE_PORT user=$AGENT pass=$TOKEN ;;
	esac
	local out
	out="$(PGPASSWORD="$pass" PGSSLMODE="$SSLMODE" pgbench -n -S -M "$mode" -c "$CLIENTS" -j "$THREADS" \
		-T "$SECONDS_PER_RUN" -h 127.0.0.1 -p "$port" -U "$user" "$DB" 2>&1)" ||
		{ printf '%s\n' "$out" >&2; die "pgbench against $target ($mode) failed"; }
	printf '%s\n' "$out" | sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p'
}

targets=(direct pgbouncer keyhole)
modes=(simple prepared)
declare -A tps
log "pgbench -S -c $CLIENTS -j $THREADS -T $SECONDS_PER_RUN, $ROUNDS rounds, scale $SCALE, sslmode=$SSLMODE"
for r in $(seq 1 "$ROUNDS"); do
	for mode in "${modes[@]}"; do
		for target in "${targets[@]}"; do
			v="$(run "$target" "$mode")"
			[ -n "$v" ] || die "no tps from pgbench ($target, $mode)"
			tps[$target/$mode]="${tps[$target/$mode]:-} $v"
			log "round $r $mode $target: $v tps"
		done
	done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
printf '\n%-10s %-9s %12s %9s   %s\n' target mode "median tps" "vs direct" "rounds"
for mode in "${modes[@]}"; do
	d="$(echo "${tps[direct/$mode]}" | median)"
	for target in "${targets[@]}"; do
		m="$(echo "${tps[$target/$mode]}" | median)"
		printf '%-10s %-9s %12.0f %8.2fx   %s\n' "$target" "$mode" "$m" "$(awk -v a="$m" -v b="$d" 'BEGIN{print a/b}')" "${tps[$target/$mode]# }"
	done
done
if grep -q '"level":"ERROR"' "$WORK/keyhole.log"; then
	log "keyhole logged errors:"; grep '"level":"ERROR"' "$WORK/keyhole.log" | head -5 >&2
fi
