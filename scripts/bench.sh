#!/usr/bin/env bash
# bench.sh: what keyhole costs next to a direct connection, PgBouncer
# (session mode), a naive Go relay (internal/benchtools/naiverelay: two
# io.Copy goroutines per connection, no protocol knowledge) and, as target
# epoll, the floor of a Go relay (internal/benchtools/epollrelay -raw: raw
# non-blocking sockets on one epoll loop on one locked thread, no
# netpoller, no goroutine per connection, as keyhole's loops are built, but
# nothing parsed, decided or audited).
#
# 1. Throughput: pgbench's select-only script (-S, scale 5) at 8 clients and
#    2 threads, prepared and simple protocol. The four targets run in turn
#    within each round, so drift on a shared machine hits all of them. For
#    every middle process (PgBouncer, naive relay, keyhole) utime+stime is
#    read from /proc/PID/stat before and after each run and divided by the
#    transactions pgbench reports: CPU per transaction is the steady figure
#    on a shared machine, tps is not. Each run also reports the Postgres
#    server's CPU per transaction (all its processes), pgbench's own (from
#    the shell's times) and the machine's idle share: on this machine the
#    tps is bounded by everyone's CPU, and
#    the server's part depends on the target too (PgBouncer's pool keeps
#    warm backends from one run to the next, where keyhole and the Go
#    relays start a backend per session; target pgbouncer-fresh is
#    PgBouncer without that reuse).
# 2. Latency: the same script at 1 client, alternated in rounds too; the
#    added latency per statement is the median of the target's pgbench
#    latency averages minus the direct one's (one -S transaction is one
#    statement). On a busy machine this figure is the noisiest.
# 3. Memory: resident memory per idle session. internal/benchtools/idleconns
#    holds BENCH_IDLE_SESSIONS (80) sessions open, each having run one
#    statement; the proxy's VmRSS before and after, divided by the sessions.
#    Measured first, on freshly started processes.
# 4. MySQL (bench_mysql below): sysbench oltp_point_select (8 threads,
#    --db-ps-mode auto and disable) against MariaDB directly, through the
#    naive relay and through a keyhole serving a mysql:// upstream, alternated
#    in rounds likewise: queries/s, the ratio to direct, and CPU per query
#    of the relay and of keyhole (utime+stime from /proc/PID/stat).
#
# Every leg is plain TCP on loopback (BENCH_SSLMODE, default disable), so
# the figures compare the proxies and not TLS. keyhole audits to a file.
#
# The report goes to stdout and, with every raw run, to build/bench/ as
# bench-<time>.json (and .txt); latest.json is the newest.
#
#   scripts/bench.sh                             # ~5 minutes
#   BENCH_SECONDS=5 BENCH_ROUNDS=1 scripts/bench.sh
#   BENCH_PROFILE=1 scripts/bench.sh             # also CPU profiles of keyhole
#
# Settings (environment):
#   BENCH_SECONDS=10      length of each throughput run
#   BENCH_ROUNDS=2        rounds of throughput runs
#   BENCH_LAT_SECONDS=5   length of each 1-client latency run (0 = skip)
#   BENCH_IDLE_SESSIONS=80  idle sessions for the memory figure (0 = skip)
#   BENCH_CLIENTS=8 BENCH_THREADS=2 BENCH_SCALE=5 BENCH_SSLMODE=disable
#   BENCH_TARGETS="direct pgbouncer naive epoll keyhole"  (also: epoll-b,
#                         pgbouncer-fresh)
#   BENCH_EPOLL_FLAGS="-raw"  epollrelay's flags for target epoll, the floor
#                         of a Go relay built as keyhole's loops are
#                         (-raw -edge -splice -loops N, see its doc
#                         comment)
#   BENCH_EPOLL_B_FLAGS=""  flags for target epoll-b (a second epollrelay in
#                         the same rounds, to compare its variants)
#   BENCH_MODES="prepared simple"
#   BENCH_SUITES="pg mysql"  which parts run (mysql needs MariaDB and sysbench)
#   BENCH_MYSQL_SECONDS=$BENCH_SECONDS BENCH_MYSQL_THREADS=8
#   BENCH_MYSQL_TABLE_SIZE=10000 BENCH_MYSQL_MODES="auto disable"
#   BENCH_MYSQL_TARGETS="direct naive keyhole"
#   BENCH_MYSQL_HOST=127.0.0.1 BENCH_MYSQL_PORT=3306 BENCH_MYSQL_ADMIN=root
#                         (the admin account, no password: it creates and
#                         drops the bench's own database and user)
#   BENCH_PROFILE=0       1: after the runs, profile keyhole under the
#                         throughput load per mode: a Go CPU profile through
#                         --pprof (keyhole-cpu-<mode>.pprof, -top.txt, -cum.txt)
#                         and, where perf works, perf record (perf-<mode>.data);
#                         both grouped by area (keyhole-areas-*.txt); and
#                         syscalls and context switches per transaction of
#                         every middle process (perf stat), in the report;
#                         keyhole's heap and goroutines with the idle
#                         sessions open (keyhole-heap-idle*, -goroutines-idle)
#                         counts: only the syscalls and context switches
#   BENCH_PROFILE_SECONDS=15
#   KEYHOLE_BIN=path      measure this keyhole binary instead of building one
#   KEYHOLE_BASE_BIN=path also measure this keyhole binary, as target
#                         keyhole-base, in the same rounds (before/after)
#   KEYHOLE_BASE_ENV="GOMAXPROCS=1 …"  environment of keyhole-base only (A/B
#                         of a runtime setting with the same binary)
#   BENCH_LABEL=text      a name for this run in the report (e.g. "before")
#   BENCH_GOMAXPROCS=n    GOMAXPROCS of the Go middle processes (default: CPUs)
#   BENCH_OUT=build/bench where the reports go
#   BENCH_DB=keyhole_bench  the Postgres database the script makes and drops
#
# Needs: Postgres on 127.0.0.1:5432 (superuser postgres, trust), MariaDB on
# 127.0.0.1:3306 (root without a password) for the MySQL part, sysbench, pgbench,
# pgbouncer, python3, go (scripts/setup.sh installs them).
set -euo pipefail
# The whole script is one compound command, so bash reads it all before it
# runs any of it: editing the file during a run cannot derail the run.
{

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
ROUNDS="${BENCH_ROUNDS:-2}"
LAT_SECONDS="${BENCH_LAT_SECONDS:-5}"
IDLE_SESSIONS="${BENCH_IDLE_SESSIONS:-80}"
CLIENTS="${BENCH_CLIENTS:-8}"
THREADS="${BENCH_THREADS:-2}"
SCALE="${BENCH_SCALE:-5}"
SSLMODE="${BENCH_SSLMODE:-disable}"
read -r -a TARGETS <<<"${BENCH_TARGETS:-direct pgbouncer naive epoll keyhole}"
read -r -a MODES <<<"${BENCH_MODES:-prepared simple}"
read -r -a SUITES <<<"${BENCH_SUITES:-pg mysql}"
has_suite() { [[ " ${SUITES[*]} " == *" $1 "* ]]; }
PROFILE="${BENCH_PROFILE:-0}"
PROFILE_SECONDS="${BENCH_PROFILE_SECONDS:-15}"
OUT="${BENCH_OUT:-$ROOT/build/bench}"
PGADMIN_HOST=127.0.0.1 PGADMIN_PORT=5432 PGADMIN_USER=postgres
# The database is dropped and made again at the start and dropped at the
# end: runs that may overlap (several work trees on one machine) each need
# their own BENCH_DB.
DB="${BENCH_DB:-keyhole_bench}"
LOGIN=keyhole_bench
AGENT=bench-agent
# What each target's clients run in the memory test (the policy allows it).
IDLE_QUERY="SELECT abalance FROM pgbench_accounts WHERE aid = 1"

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
for tool in pgbench psql pgbouncer go python3 curl; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/setup.sh"
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {
	for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
	return 1
}
psql_admin() { PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -h "$PGADMIN_HOST" -p "$PGADMIN_PORT" -U "$PGADMIN_USER" "$@"; }
CLK_TCK="$(getconf CLK_TCK)"
# cpu_ticks PID: utime+stime of the whole process (all threads), in clock
# ticks. Fields are counted after the ")" that ends the command name, which
# may itself hold spaces.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# user_ticks PID: utime alone (the log line splits CPU into user and kernel).
user_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12}'; }
# machine_ticks: the whole machine's CPU ticks from /proc/stat's cpu line,
# as "total idle" (idle counts iowait too). Over a run, the idle share
# tells a target that leaves the CPUs waiting (its latency bounds the tps)
# from one that keeps them busy (its CPU and everyone else's bound it).
machine_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6; exit}' /proc/stat; }
# server_ticks: the Postgres server's CPU ticks so far, every process of it
# (comm "postgres"): the postmaster's reaped children (cutime+cstime), read
# first, then every live process's utime+stime. A backend reaped between the
# two reads is missed; run waits for a run's backends to exit before it
# reads, so none is. Over a run this is what the target makes the server
# spend: a middle process that reuses warm server connections (PgBouncer's
# pool) spends less of it than one that starts a backend per session.
# Prints the total and, after a space, the user-mode part alone.
server_ticks() {
	python3 - <<'PY'
import os
procs = {}
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        s = open(f"/proc/{p}/stat").read()
    except OSError:
        continue
    procs[p] = (s[s.index("(") + 1:s.rindex(")")], s[s.rindex(")") + 2:].split()[1])  # comm, ppid
pg = {p: ppid for p, (comm, ppid) in procs.items() if comm == "postgres"}
masters = [p for p, ppid in pg.items() if ppid not in pg]
t = u = 0
for p in masters:
    r = open(f"/proc/{p}/stat").read()
    r = r[r.rindex(")") + 2:].split()
    t += int(r[13]) + int(r[14])
    u += int(r[13])
for p in pg:
    try:
        r = open(f"/proc/{p}/stat").read()
    except OSError:
        continue
    r = r[r.rindex(")") + 2:].split()
    t += int(r[11]) + int(r[12])
    u += int(r[11])
print(t, u)
PY
}
# login_sessions: sessions of LOGIN on DB.
login_sessions() { psql_admin -d postgres -Atc "SELECT count(*) FROM pg_stat_activity WHERE datname = '$DB' AND usename = '$LOGIN'"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

WORK="$(mktemp -d /tmp/keyhole-bench.XXXXXX)"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
KEYHOLE_PID="" BOUNCER_PID="" NAIVE_PID="" BASE_PID="" EPOLL_PID="" EPOLL_B_PID="" FRESH_PID=""
cleanup() {
	declare -F my_cleanup >/dev/null && my_cleanup
	for pid in $KEYHOLE_PID $BASE_PID $NAIVE_PID $EPOLL_PID $EPOLL_B_PID; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	done
	for pid in $BOUNCER_PID $FRESH_PID; do
		kill "$pid" 2>/dev/null || true
	done
	has_suite pg && psql_admin -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
meta() { printf 'meta\t%s\t%s\n' "$1" "$2" >>"$RESULTS"; }

# --- build -----------------------------------------------------------------
if [ -n "${KEYHOLE_BIN:-}" ]; then
	KEYHOLE="$(realpath "$KEYHOLE_BIN")"
	log "using keyhole $KEYHOLE"
else
	log "building keyhole"
	(cd "$ROOT" && go build -o bin/keyhole ./cmd/keyhole)
	KEYHOLE="$ROOT/bin/keyhole"
fi
(cd "$ROOT" && go build -o "$WORK/naiverelay" ./internal/benchtools/naiverelay &&
	go build -o "$WORK/epollrelay" ./internal/benchtools/epollrelay &&
	go build -o "$WORK/idleconns" ./internal/benchtools/idleconns)

meta date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
# The commit keyhole was built from: as the Go toolchain stamped it, else
# (GOFLAGS=-buildvcs=false) the work tree's when the script built it.
commit="$(go version -m "$KEYHOLE" | awk '$2 == "vcs.revision" {r = substr($3, 1, 12)} $2 == "vcs.modified" && $3 == "true" {m = "-dirty"} END {print r m}')"
if [ -z "$commit" ] && [ -z "${KEYHOLE_BIN:-}" ]; then
	commit="$(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD || echo -dirty)"
fi
meta commit "${commit:-unknown}"
meta label "${BENCH_LABEL:-}"
meta keyhole "$KEYHOLE"
meta pgbouncer "$(pgbouncer --version | head -1)"
meta pgbench "$(pgbench --version)"
meta go "$(go env GOVERSION)"
meta cpus "$(nproc)"
meta loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
meta settings "clients=$CLIENTS threads=$THREADS scale=$SCALE seconds=$SECONDS_PER_RUN rounds=$ROUNDS lat_seconds=$LAT_SECONDS idle_sessions=$IDLE_SESSIONS sslmode=$SSLMODE${BENCH_GOMAXPROCS:+ GOMAXPROCS=$BENCH_GOMAXPROCS}"

# The Postgres database and middle processes, for the pg suite only: a
# MySQL-only run must not drop a keyhole_bench another run is using.
"$KEYHOLE" token keygen --out "$WORK/token.key" >/dev/null
pprof_flag=()
# With an admin listener keyhole serves the reviewers' console, and the
# profiler sits behind its login: the script signs in as a viewer through
# the console's trusted-proxy headers, believed only from loopback here.
PPROF_USER=keyhole-bench
PPROF_CURL=(-H "X-Forwarded-User: $PPROF_USER")
if [ "$PROFILE" = 1 ]; then
	cat >"$WORK/pprof-console.yaml" <<EOF
tls:
  generate_self_signed: true
console:
  proxy_auth:
    trusted: [127.0.0.1]
    viewers: [$PPROF_USER]
EOF
	pprof_flag=(--pprof --config "$WORK/pprof-console.yaml")
fi
# GOENV: environment for the Go middle processes (naive relay, keyhole).
GOENV=(env)
[ -n "${BENCH_GOMAXPROCS:-}" ] && GOENV+=("GOMAXPROCS=$BENCH_GOMAXPROCS")
setup_pg() {
# --- database --------------------------------------------------------------
log "creating $DB (pgbench -i -s $SCALE)"
psql_admin -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
psql_admin -d postgres -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$LOGIN') THEN CREATE ROLE $LOGIN LOGIN; END IF; END\$\$" >/dev/null
psql_admin -d postgres -c "CREATE DATABASE $DB" >/dev/null
pgbench -i -q -s "$SCALE" -h "$PGADMIN_HOST" -p "$PGADMIN_PORT" -U "$PGADMIN_USER" "$DB" >/dev/null 2>&1
psql_admin -d "$DB" -c "GRANT ALL ON ALL TABLES IN SCHEMA public TO $LOGIN" >/dev/null

# --- the middle processes --------------------------------------------------
# PgBouncer, session mode, as the postgres OS user (it refuses to run as
# root). The pool holds a server connection per client (session mode), so it
# is sized for the idle-session test.
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
admin_users = $LOGIN
max_client_conn = 200
default_pool_size = $((IDLE_SESSIONS + CLIENTS + 2))
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
# pgbouncer-fresh: the same PgBouncer, but closing a server connection
# once no client uses it (server_lifetime 1 s), so that every run starts
# new backends as keyhole and the Go relays do.
FRESH_PORT=""
if [[ " ${TARGETS[*]} " == *" pgbouncer-fresh "* ]]; then
	FRESH_PORT="$(free_port)"
	sed -e "s/^listen_port = .*/listen_port = $FRESH_PORT/" -e "s|pgbouncer\.log|pgbouncer-fresh.log|" -e "s|pgbouncer\.pid|pgbouncer-fresh.pid|" \
		"$WORK/pgbouncer.ini" >"$WORK/pgbouncer-fresh.ini"
	printf 'server_lifetime = 1\nserver_idle_timeout = 1\n' >>"$WORK/pgbouncer-fresh.ini"
	chmod 644 "$WORK/pgbouncer-fresh.ini"
	if [ "$(id -u)" = 0 ]; then
		touch "$WORK/pgbouncer-fresh.log" && chown postgres "$WORK/pgbouncer-fresh.log"
		runuser -u postgres -- pgbouncer -d "$WORK/pgbouncer-fresh.ini"
	else
		pgbouncer -d "$WORK/pgbouncer-fresh.ini"
	fi
	wait_port "$FRESH_PORT" || die "pgbouncer (fresh) did not start: $(cat "$WORK/pgbouncer-fresh.log")"
	FRESH_PID="$(cat "$WORK/pgbouncer-fresh.pid")"
fi

NAIVE_PORT="$(free_port)"
"${GOENV[@]}" "$WORK/naiverelay" -listen "127.0.0.1:$NAIVE_PORT" -upstream "$PGADMIN_HOST:$PGADMIN_PORT" >"$WORK/naive.log" 2>&1 &
NAIVE_PID=$!
wait_port "$NAIVE_PORT" || die "naiverelay did not start: $(cat "$WORK/naive.log")"
# The epoll relays, when named in TARGETS.
EPOLL_PORT="" EPOLL_B_PORT=""
if [[ " ${TARGETS[*]} " == *" epoll "* ]]; then
	EPOLL_PORT="$(free_port)"
	# shellcheck disable=SC2086 # BENCH_EPOLL_FLAGS is a list of flags
	"${GOENV[@]}" "$WORK/epollrelay" -listen "127.0.0.1:$EPOLL_PORT" -upstream "$PGADMIN_HOST:$PGADMIN_PORT" ${BENCH_EPOLL_FLAGS--raw} >"$WORK/epoll.log" 2>&1 &
	EPOLL_PID=$!
	wait_port "$EPOLL_PORT" || die "epollrelay did not start: $(cat "$WORK/epoll.log")"
	meta epoll_flags "${BENCH_EPOLL_FLAGS--raw}"
fi
if [[ " ${TARGETS[*]} " == *" epoll-b "* ]]; then
	EPOLL_B_PORT="$(free_port)"
	# shellcheck disable=SC2086 # BENCH_EPOLL_B_FLAGS is a list of flags
	"${GOENV[@]}" "$WORK/epollrelay" -listen "127.0.0.1:$EPOLL_B_PORT" -upstream "$PGADMIN_HOST:$PGADMIN_PORT" ${BENCH_EPOLL_B_FLAGS-} >"$WORK/epoll-b.log" 2>&1 &
	EPOLL_B_PID=$!
	wait_port "$EPOLL_B_PORT" || die "epollrelay (epoll-b) did not start: $(cat "$WORK/epoll-b.log")"
	meta epoll_b_flags "${BENCH_EPOLL_B_FLAGS-}"
fi

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
TOKEN="$("$KEYHOLE" token mint --key "$WORK/token.key" --agent "$AGENT" --ttl 2h 2>/dev/null)" || die "keyhole token mint failed"
KEYHOLE_PORT="$(free_port)" ADMIN_PORT="$(free_port)"
"${GOENV[@]}" "$KEYHOLE" serve --upstream "postgres://$LOGIN@$PGADMIN_HOST:$PGADMIN_PORT/$DB" \
	--policy "$WORK/policy.yaml" --token-key "$WORK/token.key.pub" --audit "$WORK/audit.jsonl" \
	--listen-postgres "127.0.0.1:$KEYHOLE_PORT" --admin "127.0.0.1:$ADMIN_PORT" "${pprof_flag[@]}" \
	--log-level warn 2>"$WORK/keyhole.log" &
KEYHOLE_PID=$!
wait_port "$KEYHOLE_PORT" || die "keyhole did not start: $(cat "$WORK/keyhole.log")"

# keyhole-base: another keyhole binary (KEYHOLE_BASE_BIN, e.g. main's) in
# the same rounds, for a before/after comparison that the machine's load
# drifts cannot skew.
if [ -n "${KEYHOLE_BASE_BIN:-}" ]; then
	BASE_PORT="$(free_port)" BASE_ADMIN_PORT="$(free_port)"
	# A directory of its own: the approvals store (keyhole.db) sits next to
	# the audit file, and an older build refuses a store a newer one migrated.
	mkdir -p "$WORK/base"
	# shellcheck disable=SC2086 # KEYHOLE_BASE_ENV is a list of NAME=VALUE
	"${GOENV[@]}" ${KEYHOLE_BASE_ENV:-} "$(realpath "$KEYHOLE_BASE_BIN")" serve --upstream "postgres://$LOGIN@$PGADMIN_HOST:$PGADMIN_PORT/$DB" \
		--policy "$WORK/policy.yaml" --token-key "$WORK/token.key.pub" --audit "$WORK/base/audit.jsonl" \
		--listen-postgres "127.0.0.1:$BASE_PORT" --admin "127.0.0.1:$BASE_ADMIN_PORT" \
		--log-level warn 2>"$WORK/keyhole-base.log" &
	BASE_PID=$!
	wait_port "$BASE_PORT" || die "keyhole-base did not start: $(cat "$WORK/keyhole-base.log")"
	[ -n "${BENCH_TARGETS:-}" ] || TARGETS+=(keyhole-base)
	meta keyhole_base "$KEYHOLE_BASE_BIN ${KEYHOLE_BASE_ENV:-}"
fi

}
if has_suite pg; then setup_pg; fi

# target_conn TARGET: sets port, user and pass for TARGET.
target_conn() {
	pass=""
	case $1 in
	direct) port=$PGADMIN_PORT user=$LOGIN ;;
	pgbouncer) port=$BOUNCER_PORT user=$LOGIN ;;
	pgbouncer-fresh) port=$FRESH_PORT user=$LOGIN ;;
	naive) port=$NAIVE_PORT user=$LOGIN ;;
	epoll) port=$EPOLL_PORT user=$LOGIN ;;
	epoll-b) port=$EPOLL_B_PORT user=$LOGIN ;;
	keyhole) port=$KEYHOLE_PORT user=$AGENT pass=$TOKEN ;;
	keyhole-base) port=$BASE_PORT user=$AGENT pass=$TOKEN ;;
	*) die "unknown target $1" ;;
	esac
}
# target_pid TARGET: the middle process, or nothing for direct.
target_pid() {
	case $1 in
	pgbouncer) echo "$BOUNCER_PID" ;;
	pgbouncer-fresh) echo "$FRESH_PID" ;;
	naive) echo "$NAIVE_PID" ;;
	epoll) echo "$EPOLL_PID" ;;
	epoll-b) echo "$EPOLL_B_PID" ;;
	keyhole) echo "$KEYHOLE_PID" ;;
	keyhole-base) echo "$BASE_PID" ;;
	esac
}

# --- 3. memory per idle session (first, on fresh processes) -----------------
# mem_idle TARGET: records RSS (and, for keyhole, Go heap in use) before and
# after IDLE_SESSIONS sessions are open and idle.
# go_heap_inuse TARGET: a keyhole's Go heap in use (KiB), from /metrics.
go_heap_inuse() {
	local p=$ADMIN_PORT
	[ "$1" = keyhole-base ] && p=$BASE_ADMIN_PORT
	curl -fsS "http://127.0.0.1:$p/metrics" | awk '$1 == "go_memstats_heap_inuse_bytes" {printf "%d", $2 / 1024}'
}
# wait_backends_gone [kept]: until no session of LOGIN is left on DB
# (Postgres has 100 connection slots, shared with whoever else uses this
# server). With "kept", the upstream sessions a keyhole keeps for reuse
# (reset: idle, their last statement DISCARD ALL; limits.upstream_reuse_max)
# are ended as they come, as PgBouncer's pool is emptied below.
wait_backends_gone() {
	local n
	for _ in $(seq 1 100); do
		[ "${1:-}" = kept ] && psql_admin -d postgres -Atc "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = '$DB' AND usename = '$LOGIN' AND state = 'idle' AND query = 'DISCARD ALL'" >/dev/null
		n="$(psql_admin -d postgres -Atc "SELECT count(*) FROM pg_stat_activity WHERE datname = '$DB' AND usename = '$LOGIN'")"
		[ "$n" = 0 ] && return 0
		sleep 0.1
	done
	die "$n sessions of $LOGIN still open on $DB"
}
mem_idle() {
	mkdir -p "$OUT"
	local target=$1 pid port user pass
	pid="$(target_pid "$target")"
	target_conn "$target"
	coproc IDLE { PGPASSWORD="$pass" exec "$WORK/idleconns" -n "$IDLE_SESSIONS" -query "$IDLE_QUERY" \
		-dsn "host=127.0.0.1 port=$port user=$user dbname=$DB sslmode=$SSLMODE" 2>"$WORK/idleconns.log"; }
	local line before after heap_before="" heap_after=""
	read -r line <&"${IDLE[0]}" || die "idleconns ($target): $(cat "$WORK/idleconns.log")"
	[ "$line" = warm ] || die "idleconns ($target) said $line"
	before="$(rss_kib "$pid")"
	case $target in keyhole*) heap_before="$(go_heap_inuse "$target")" ;; esac
	echo go >&"${IDLE[1]}"
	read -r line <&"${IDLE[0]}" || die "idleconns ($target): $(cat "$WORK/idleconns.log")"
	[ "$line" = "open $IDLE_SESSIONS" ] || die "idleconns ($target) said $line"
	after="$(rss_kib "$pid")"
	case $target in keyhole*) heap_after="$(go_heap_inuse "$target")" ;; esac
	if [ "$PROFILE" = 1 ] && [ "$target" = keyhole ]; then
		# What the idle sessions hold: heap by allocation site, goroutines.
		curl -fsS "${PPROF_CURL[@]}" -o "$OUT/keyhole-heap-idle.pprof" "http://127.0.0.1:$ADMIN_PORT/debug/pprof/heap?gc=1"
		go tool pprof -sample_index=inuse_space -top -nodecount=30 "$KEYHOLE" "$OUT/keyhole-heap-idle.pprof" \
			>"$OUT/keyhole-heap-idle-top.txt" 2>/dev/null
		curl -fsS "${PPROF_CURL[@]}" -o "$OUT/keyhole-goroutines-idle.txt" "http://127.0.0.1:$ADMIN_PORT/debug/pprof/goroutine?debug=1"
	fi
	local idle_pid=$IDLE_PID
	# Closing its stdin tells idleconns to close the sessions and exit.
	eval "exec ${IDLE[1]}>&-"
	wait "$idle_pid" || true
	if [ "$target" = pgbouncer ]; then
		# Session pooling keeps the server connections after the clients
		# leave; close them, or Postgres runs out of connection slots.
		psql -X -q -h 127.0.0.1 -p "$BOUNCER_PORT" -U "$LOGIN" -d pgbouncer -c "KILL $DB" -c "RESUME $DB" >/dev/null ||
			die "cannot close PgBouncer's server connections"
	fi
	case $target in
	keyhole*) wait_backends_gone kept ;;
	*) wait_backends_gone ;;
	esac
	printf 'mem\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$IDLE_SESSIONS" "$before" "$after" "$heap_before" "$heap_after" >>"$RESULTS"
	log "memory $target: RSS $before -> $after KiB with $IDLE_SESSIONS idle sessions"
}
if has_suite pg && [ "$IDLE_SESSIONS" -gt 0 ]; then
	for target in "${TARGETS[@]}"; do
		[ "$target" = direct ] || mem_idle "$target"
	done
fi

# --- 1 and 2. pgbench runs -------------------------------------------------
# run KIND TARGET MODE CLIENTS THREADS SECONDS ROUND: one pgbench -S run,
# recorded as a line of RESULTS.
run() {
	local kind=$1 target=$2 mode=$3 clients=$4 threads=$5 secs=$6 round=$7 port user pass pid t0=0 t1=0 u0=0 u1=0 out
	target_conn "$target"
	pid="$(target_pid "$target")"
	[ -n "$pid" ] && t0="$(cpu_ticks "$pid")" && u0="$(user_ticks "$pid")"
	local m0 m1 s0 s1 su0 su1 n0
	n0="$(login_sessions)"
	read -r s0 su0 <<<"$(server_ticks)"
	m0="$(machine_ticks)"
	out="$(PGPASSWORD="$pass" PGSSLMODE="$SSLMODE" pgbench -n -S -M "$mode" -c "$clients" -j "$threads" \
		-T "$secs" -h 127.0.0.1 -p "$port" -U "$user" "$DB" 2>&1 && times)" ||
		{ printf '%s\n' "$out" >&2; die "pgbench against $target ($mode) failed"; }
	[ -n "$pid" ] && t1="$(cpu_ticks "$pid")" && u1="$(user_ticks "$pid")"
	m1="$(machine_ticks)"
	# The run's backends exit after pgbench disconnects: wait (up to 3 s;
	# a pool keeps its server connections) until they are gone, so that
	# their CPU is in the postmaster's reaped children.
	for _ in $(seq 1 30); do
		[ "$(login_sessions)" -le "$n0" ] && break
		sleep 0.1
	done
	read -r s1 su1 <<<"$(server_ticks)"
	local tps txns lat
	tps="$(printf '%s\n' "$out" | sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p')"
	txns="$(printf '%s\n' "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')"
	lat="$(printf '%s\n' "$out" | sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p')"
	[ -n "$tps" ] && [ -n "$txns" ] && [ -n "$lat" ] || { printf '%s\n' "$out" >&2; die "cannot read pgbench's output ($target, $mode)"; }
	# The client's own CPU: the last line of times(1) is the subshell's
	# children, pgbench alone ("0m1.234s 0m0.567s", user and system).
	local client_us
	client_us="$(printf '%s\n' "$out" | tail -n 1 | awk '{n = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); n += a[1] * 60 + a[2] } printf "%d", n * 1e6}')"
	local cpu=""
	[ -n "$pid" ] && cpu=$((t1 - t0))
	local idle_pct
	idle_pct="$(awk -v a="$m0" -v b="$m1" 'BEGIN{split(a, x, " "); split(b, y, " "); t = y[1] - x[1]; if (t > 0) printf "%.1f", (y[2] - x[2]) * 100 / t}')"
	printf 'run\tpg\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$target" "$mode" "$clients" "$round" "$tps" "$txns" "$lat" "$cpu" "$((s1 - s0))" "$idle_pct" "$client_us" >>"$RESULTS"
	local per=""
	[ -n "$cpu" ] && per="$(awk -v c="$cpu" -v u="$((u1 - u0))" -v n="$txns" -v hz="$CLK_TCK" 'BEGIN{printf ", %.1f us CPU/txn (user %.1f)", c * 1e6 / hz / n, u * 1e6 / hz / n}')"
	per="$per$(awk -v c="$((s1 - s0))" -v n="$txns" -v hz="$CLK_TCK" -v su="$((su1 - su0))" -v cl="$client_us" 'BEGIN{printf ", Postgres %.1f us CPU/txn (user %.1f), pgbench %.1f", c * 1e6 / hz / n, su * 1e6 / hz / n, cl / n}')"
	log "$kind round $round $mode $target: $tps tps, latency $lat ms$per, machine idle $idle_pct%"
}

has_suite pg && log "throughput: pgbench -S -c $CLIENTS -j $THREADS -T $SECONDS_PER_RUN, $ROUNDS rounds, scale $SCALE, sslmode=$SSLMODE"
has_suite pg && for r in $(seq 1 "$ROUNDS"); do
	for mode in "${MODES[@]}"; do
		for target in "${TARGETS[@]}"; do
			run throughput "$target" "$mode" "$CLIENTS" "$THREADS" "$SECONDS_PER_RUN" "$r"
		done
	done
done
if has_suite pg && [ "$LAT_SECONDS" -gt 0 ]; then
	log "latency: pgbench -S -c 1 -T $LAT_SECONDS, $ROUNDS rounds"
	for r in $(seq 1 "$ROUNDS"); do
		for mode in "${MODES[@]}"; do
			for target in "${TARGETS[@]}"; do
				run latency "$target" "$mode" 1 1 "$LAT_SECONDS" "$r"
			done
		done
	done
fi

# --- 4. MySQL ----------------------------------------------------------------
# bench_mysql: sysbench oltp_point_select (one point select per event)
# against MariaDB directly, through naiverelay (-upstream to MariaDB) and
# through a keyhole serving only a mysql:// upstream (its own process, so
# its CPU is MySQL's alone), alternated like the Postgres runs: for each
# round, each ps mode (--db-ps-mode auto: binary prepared statements;
# disable: text with new literals every time), each target. A line per run
# of the same shape as run's, with suite "mysql", mode ps-auto or
# ps-disable, and sysbench's queries as the transactions (CPU per query):
#   run<TAB>mysql<TAB>throughput<TAB>TARGET<TAB>MODE<TAB>THREADS<TAB>ROUND<TAB>QPS<TAB>QUERIES<TAB>LAT_MS<TAB>CPU_TICKS
# The database and MariaDB user it uses have random names, are made here
# and dropped on exit. keyhole decides every statement with the real
# engine (a policy that allows reading sbtest1) and audits to a file.
MY_KEYHOLE_PID="" MY_NAIVE_PID="" MY_BASE_PID="" MY_DB="" MY_USER=""
my_admin() { mariadb --no-defaults -h "$MY_HOST" -P "$MY_PORT" -u "$MY_ADMIN_USER" --batch --skip-column-names "$@"; }
my_cleanup() {
	for pid in $MY_KEYHOLE_PID $MY_BASE_PID $MY_NAIVE_PID; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	done
	[ -n "$MY_DB" ] && my_admin -e "DROP DATABASE IF EXISTS \`$MY_DB\`" >/dev/null 2>&1 || true
	[ -n "$MY_USER" ] && my_admin -e "DROP USER IF EXISTS '$MY_USER'@'%'" >/dev/null 2>&1 || true
}
# my_target_conn TARGET: sets port, user and pass for TARGET.
my_target_conn() {
	case $1 in
	direct) port=$MY_PORT user=$MY_USER pass=$MY_PW ;;
	naive) port=$MY_NAIVE_PORT user=$MY_USER pass=$MY_PW ;;
	keyhole) port=$MY_KEYHOLE_PORT user=$MY_AGENT pass=$MY_SECRET ;;
	keyhole-base) port=$MY_BASE_PORT user=$MY_AGENT pass=$MY_SECRET ;;
	*) die "unknown MySQL target $1" ;;
	esac
}
my_target_pid() {
	case $1 in
	naive) echo "$MY_NAIVE_PID" ;;
	keyhole) echo "$MY_KEYHOLE_PID" ;;
	keyhole-base) echo "$MY_BASE_PID" ;;
	esac
}
# my_sysbench TARGET PS_MODE SECONDS CMD: sysbench's output.
my_sysbench() {
	local port user pass
	my_target_conn "$1"
	sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$port" \
		--mysql-user="$user" --mysql-password="$pass" --mysql-db="$MY_DB" --tables=1 \
		--table-size="$MY_TABLE_SIZE" --threads="$MY_THREADS" --time="$3" --db-ps-mode="$2" "$4" 2>&1
}
# my_run TARGET PS_MODE ROUND: one throughput run, recorded.
my_run() {
	local target=$1 ps=$2 round=$3 pid t0=0 t1=0 out
	pid="$(my_target_pid "$target")"
	[ -n "$pid" ] && t0="$(cpu_ticks "$pid")"
	out="$(my_sysbench "$target" "$ps" "$MY_SECONDS" run)" ||
		{ printf '%s\n' "$out" >&2; die "sysbench against $target (ps-mode $ps) failed"; }
	[ -n "$pid" ] && t1="$(cpu_ticks "$pid")"
	local qps queries lat cpu="" per=""
	queries="$(printf '%s\n' "$out" | sed -n 's/^ *queries: *\([0-9]*\) *(\([0-9.]*\) per sec.)$/\1/p')"
	qps="$(printf '%s\n' "$out" | sed -n 's/^ *queries: *\([0-9]*\) *(\([0-9.]*\) per sec.)$/\2/p')"
	lat="$(printf '%s\n' "$out" | sed -n 's/^ *avg: *\([0-9.]*\)$/\1/p' | head -1)"
	[ -n "$qps" ] && [ -n "$queries" ] && [ -n "$lat" ] || { printf '%s\n' "$out" >&2; die "cannot read sysbench's output ($target, $ps)"; }
	[ -n "$pid" ] && cpu=$((t1 - t0))
	printf 'run\tmysql\tthroughput\t%s\tps-%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$ps" "$MY_THREADS" "$round" "$qps" "$queries" "$lat" "$cpu" >>"$RESULTS"
	[ -n "$cpu" ] && per="$(awk -v c="$cpu" -v n="$queries" -v hz="$CLK_TCK" 'BEGIN{printf ", %.1f us CPU/query", c * 1e6 / hz / n}')"
	log "mysql round $round ps-$ps $target: $qps queries/s$per"
}
# my_keyhole BIN PORT ADMIN_PORT AUDIT LOG [ENV...]: starts a keyhole
# serving the MySQL upstream; its PID is in MY_STARTED.
my_keyhole() {
	local bin=$1 port=$2 admin=$3 audit=$4 logf=$5
	shift 5
	"${GOENV[@]}" "$@" "$bin" serve --config "$WORK/keyhole-mysql.yaml" \
		--upstream "mysql://$MY_USER:$MY_PW@$MY_HOST:$MY_PORT/$MY_DB" --policy "$WORK/policy-mysql.yaml" \
		--audit "$audit" --listen-mysql "127.0.0.1:$port" --admin "127.0.0.1:$admin" "${my_pprof_flag[@]}" \
		--log-level warn >/dev/null 2>"$logf" &
	MY_STARTED=$!
}
bench_mysql() {
	MY_HOST="${BENCH_MYSQL_HOST:-127.0.0.1}" MY_PORT="${BENCH_MYSQL_PORT:-3306}" MY_ADMIN_USER="${BENCH_MYSQL_ADMIN:-root}"
	MY_SECONDS="${BENCH_MYSQL_SECONDS:-$SECONDS_PER_RUN}" MY_THREADS="${BENCH_MYSQL_THREADS:-8}"
	MY_TABLE_SIZE="${BENCH_MYSQL_TABLE_SIZE:-10000}"
	local ps_modes targets
	read -r -a ps_modes <<<"${BENCH_MYSQL_MODES:-auto disable}"
	read -r -a targets <<<"${BENCH_MYSQL_TARGETS:-direct naive keyhole}"
	for tool in sysbench mariadb; do
		command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/setup.sh"
	done
	my_admin -e "SELECT 1" >/dev/null || die "MariaDB not reachable at $MY_HOST:$MY_PORT as $MY_ADMIN_USER"
	local tag
	tag="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
	MY_DB="keyhole_bench_$tag" MY_USER="kh_bench_$tag" MY_PW="bench-$tag-$RANDOM$RANDOM"
	MY_AGENT=bench-mysql-agent
	log "mysql: creating $MY_DB (sysbench prepare, $MY_TABLE_SIZE rows)"
	my_admin -e "CREATE DATABASE \`$MY_DB\`; CREATE USER '$MY_USER'@'%' IDENTIFIED BY '$MY_PW'; GRANT ALL ON \`$MY_DB\`.* TO '$MY_USER'@'%';" ||
		die "cannot create the MySQL bench database"
	my_sysbench direct auto 0 prepare >"$WORK/sysbench-prepare.log" || die "sysbench prepare: $(cat "$WORK/sysbench-prepare.log")"
	meta mysql_server "$(my_admin -e 'SELECT VERSION()')"
	meta sysbench "$(sysbench --version)"
	meta mysql_settings "threads=$MY_THREADS seconds=$MY_SECONDS table_size=$MY_TABLE_SIZE ps_modes=${ps_modes[*]}"

	# The agent logs in with a MySQL secret (a verifier in keyhole.yaml),
	# as a sysbench without TLS can: no token, no RSA exchange per login.
	local out
	out="$("$KEYHOLE" agent secret --agent "$MY_AGENT" --mysql)" || die "keyhole agent secret failed"
	MY_SECRET="$(sed -n 's/^secret: //p' <<<"$out")"
	local verifier
	verifier="$(sed -n 's/^"'"$MY_AGENT"'": "\(MYSQL\$[^"]*\)"$/\1/p' <<<"$out")"
	[ -n "$MY_SECRET" ] && [ -n "$verifier" ] || die "cannot read keyhole agent secret's output"
	cat >"$WORK/keyhole-mysql.yaml" <<YAML
tls: {generate_self_signed: true}
identity:
  tokens: {public_key_file: $WORK/token.key.pub}
  mysql:
    verifiers: {$MY_AGENT: "$verifier"}
YAML
	# One --config only (a second would replace the first): the profiler's
	# console settings go into this file.
	my_pprof_flag=()
	if [ "$PROFILE" = 1 ]; then
		sed -n '/^console:/,$p' "$WORK/pprof-console.yaml" >>"$WORK/keyhole-mysql.yaml"
		my_pprof_flag=(--pprof)
	fi
	cat >"$WORK/policy-mysql.yaml" <<YAML
roles:
  bench:
    upstream: bench
    allow:
      - select: [$MY_DB.sbtest1]
agents:
  $MY_AGENT: {role: bench}
YAML
	MY_NAIVE_PORT="$(free_port)"
	"${GOENV[@]}" "$WORK/naiverelay" -listen "127.0.0.1:$MY_NAIVE_PORT" -upstream "$MY_HOST:$MY_PORT" >"$WORK/naive-mysql.log" 2>&1 &
	MY_NAIVE_PID=$!
	wait_port "$MY_NAIVE_PORT" || die "naiverelay (mysql) did not start: $(cat "$WORK/naive-mysql.log")"
	MY_KEYHOLE_PORT="$(free_port)" MY_ADMIN_PORT="$(free_port)"
	my_keyhole "$KEYHOLE" "$MY_KEYHOLE_PORT" "$MY_ADMIN_PORT" "$WORK/audit-mysql.jsonl" "$WORK/keyhole-mysql.log"
	MY_KEYHOLE_PID=$MY_STARTED
	wait_port "$MY_KEYHOLE_PORT" || die "keyhole (mysql) did not start: $(cat "$WORK/keyhole-mysql.log")"
	if [ -n "${KEYHOLE_BASE_BIN:-}" ]; then
		MY_BASE_PORT="$(free_port)" MY_BASE_ADMIN_PORT="$(free_port)"
		mkdir -p "$WORK/base-mysql" # its own approvals store, as above
		# shellcheck disable=SC2086 # KEYHOLE_BASE_ENV is a list of NAME=VALUE
		my_keyhole "$(realpath "$KEYHOLE_BASE_BIN")" "$MY_BASE_PORT" "$MY_BASE_ADMIN_PORT" "$WORK/base-mysql/audit.jsonl" "$WORK/keyhole-mysql-base.log" ${KEYHOLE_BASE_ENV:-}
		MY_BASE_PID=$MY_STARTED
		wait_port "$MY_BASE_PORT" || die "keyhole-base (mysql) did not start: $(cat "$WORK/keyhole-mysql-base.log")"
		[ -n "${BENCH_MYSQL_TARGETS:-}" ] || targets+=(keyhole-base)
	fi
	# A short warm-up of each target (caches, connection paths).
	for target in "${targets[@]}"; do
		my_sysbench "$target" auto 1 run >/dev/null || die "sysbench warm-up against $target failed"
	done

	log "mysql throughput: sysbench oltp_point_select --threads=$MY_THREADS --time=$MY_SECONDS, $ROUNDS rounds"
	for r in $(seq 1 "$ROUNDS"); do
		for ps in "${ps_modes[@]}"; do
			for target in "${targets[@]}"; do
				my_run "$target" "$ps" "$r"
			done
		done
	done
	if [ "$PROFILE" = 1 ]; then
		for ps in "${ps_modes[@]}"; do
			my_profile "$ps"
		done
		if perf_works; then
			for ps in "${ps_modes[@]}"; do
				for target in "${targets[@]}"; do
					[ "$target" = direct ] || my_count_syscalls "$target" "$ps"
				done
			done
		fi
	fi
	meta audit_events_mysql "$(wc -l <"$WORK/audit-mysql.jsonl")"
	if grep -q '"level":"ERROR"' "$WORK/keyhole-mysql.log"; then
		log "keyhole (mysql) logged errors:"
		grep '"level":"ERROR"' "$WORK/keyhole-mysql.log" | head -5 >&2
	fi
}
# my_count_syscalls TARGET PS_MODE: syscalls and context switches of the
# middle process per query (perf stat), as count lines like the Postgres
# ones (mode mysql-ps-MODE).
my_count_syscalls() {
	local target=$1 ps=$2 pid bg queries
	pid="$(my_target_pid "$target")"
	my_sysbench "$target" "$ps" "$((PROFILE_SECONDS + 2))" run >"$WORK/count-sysbench.log" &
	bg=$!
	sleep 1
	perf stat -x, -o "$WORK/perf-stat-mysql.csv" -e "$COUNT_EVENTS" -p "$pid" -- sleep "$PROFILE_SECONDS" ||
		die "perf stat of $target (mysql) failed"
	wait "$bg" || die "sysbench under perf stat failed: $(cat "$WORK/count-sysbench.log")"
	queries="$(sed -n 's/^ *queries: *[0-9]* *(\([0-9.]*\) per sec.)$/\1/p' "$WORK/count-sysbench.log" | awk -v s="$PROFILE_SECONDS" '{printf "%d", $1 * s}')"
	awk -F, -v t="$target" -v m="mysql-ps-$ps" -v n="$queries" '$1 ~ /^[0-9]+$/ {
		e = $3; sub(/^(raw_)?syscalls:sys_enter_?/, "", e); if (e == "") e = "syscalls"
		printf "count\t%s\t%s\t%s\t%s\t%s\n", t, m, n, e, $1 }' "$WORK/perf-stat-mysql.csv" >>"$RESULTS"
	log "syscalls $target mysql ps-$ps: $(awk -F, -v n="$queries" '$3 == "raw_syscalls:sys_enter" {printf "%.2f per query", $1 / n}' "$WORK/perf-stat-mysql.csv")"
}
# my_profile PS_MODE: a Go CPU profile of the MySQL keyhole under the
# throughput load, by area per query.
my_profile() {
	local ps=$1 bg queries
	mkdir -p "$OUT"
	my_sysbench keyhole "$ps" "$((PROFILE_SECONDS + 2))" run >"$WORK/profile-sysbench.log" &
	bg=$!
	sleep 1
	curl -fsS "${PPROF_CURL[@]}" -o "$OUT/keyhole-mysql-cpu-$ps.pprof" "http://127.0.0.1:$MY_ADMIN_PORT/debug/pprof/profile?seconds=$PROFILE_SECONDS" ||
		die "profile of keyhole (mysql) failed"
	wait "$bg" || die "sysbench under the profiler failed: $(cat "$WORK/profile-sysbench.log")"
	queries="$(sed -n 's/^ *queries: *[0-9]* *(\([0-9.]*\) per sec.)$/\1/p' "$WORK/profile-sysbench.log" | awk -v s="$PROFILE_SECONDS" '{printf "%d", $1 * s}')"
	go tool pprof -top -nodecount=60 "$KEYHOLE" "$OUT/keyhole-mysql-cpu-$ps.pprof" >"$OUT/keyhole-mysql-cpu-$ps-top.txt" 2>/dev/null
	go tool pprof -top -cum -nodecount=60 "$KEYHOLE" "$OUT/keyhole-mysql-cpu-$ps.pprof" >"$OUT/keyhole-mysql-cpu-$ps-cum.txt" 2>/dev/null
	go tool pprof -raw "$KEYHOLE" "$OUT/keyhole-mysql-cpu-$ps.pprof" 2>/dev/null >"$WORK/pprof-mysql.raw"
	python3 "$ROOT/scripts/profile_areas.py" pprof "$WORK/pprof-mysql.raw" --txns "$queries" >"$OUT/keyhole-areas-mysql-$ps.txt"
	log "profile mysql ps-$ps: $OUT/keyhole-mysql-cpu-$ps.pprof, by area in keyhole-areas-mysql-$ps.txt ($queries queries)"
}

# --- profiles ----------------------------------------------------------------
# profile MODE: a Go CPU profile of keyhole under the throughput load and,
# where perf can sample, a perf profile with kernel stacks; each grouped by
# area (scripts/profile_areas.py) in CPU us per transaction.
perf_works() { perf record -q -o "$WORK/perf.probe" -e cpu-clock -- true >/dev/null 2>&1; }
# under_load TARGET MODE CMD...: runs CMD while pgbench loads TARGET;
# prints the transactions pgbench made during CMD's PROFILE_SECONDS (tps x
# seconds).
under_load() {
	local target=$1 mode=$2 port user pass bg tps
	shift 2
	target_conn "$target"
	PGPASSWORD="$pass" PGSSLMODE="$SSLMODE" pgbench -n -S -M "$mode" -c "$CLIENTS" -j "$THREADS" \
		-T "$((PROFILE_SECONDS + 2))" -h 127.0.0.1 -p "$port" -U "$user" "$DB" >"$WORK/profile-pgbench.log" 2>&1 &
	bg=$!
	sleep 1
	"$@" || die "$1 failed under load"
	wait "$bg" || die "pgbench under the profiler failed: $(cat "$WORK/profile-pgbench.log")"
	tps="$(sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p' "$WORK/profile-pgbench.log")"
	awk -v t="$tps" -v s="$PROFILE_SECONDS" 'BEGIN{printf "%d", t * s}'
}
# Syscalls and context switches of a middle process, per transaction: the
# kernel side of a relay's cost, comparable across PgBouncer, naive, keyhole.
COUNT_EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_futex,syscalls:sys_enter_nanosleep,context-switches,cpu-migrations
count_syscalls() {
	local target=$1 mode=$2 pid txns
	pid="$(target_pid "$target")"
	txns="$(under_load "$target" "$mode" perf stat -x, -o "$WORK/perf-stat.csv" -e "$COUNT_EVENTS" -p "$pid" -- sleep "$PROFILE_SECONDS")"
	awk -F, -v t="$target" -v m="$mode" -v n="$txns" '$1 ~ /^[0-9]+$/ {
		e = $3; sub(/^(raw_)?syscalls:sys_enter_?/, "", e); if (e == "") e = "syscalls"
		printf "count\t%s\t%s\t%s\t%s\t%s\n", t, m, n, e, $1 }' "$WORK/perf-stat.csv" >>"$RESULTS"
	log "syscalls $target $mode: $(awk -F, -v n="$txns" '$3 == "raw_syscalls:sys_enter" {printf "%.1f per transaction", $1 / n}' "$WORK/perf-stat.csv")"
}
profile() {
	local mode=$1 txns
	txns="$(under_load keyhole "$mode" curl -fsS "${PPROF_CURL[@]}" -o "$OUT/keyhole-cpu-$mode.pprof" \
		"http://127.0.0.1:$ADMIN_PORT/debug/pprof/profile?seconds=$PROFILE_SECONDS")"
	go tool pprof -top -nodecount=60 "$KEYHOLE" "$OUT/keyhole-cpu-$mode.pprof" >"$OUT/keyhole-cpu-$mode-top.txt" 2>/dev/null
	go tool pprof -top -cum -nodecount=60 "$KEYHOLE" "$OUT/keyhole-cpu-$mode.pprof" >"$OUT/keyhole-cpu-$mode-cum.txt" 2>/dev/null
	go tool pprof -raw "$KEYHOLE" "$OUT/keyhole-cpu-$mode.pprof" 2>/dev/null >"$WORK/pprof.raw"
	python3 "$ROOT/scripts/profile_areas.py" pprof "$WORK/pprof.raw" --txns "$txns" >"$OUT/keyhole-areas-pprof-$mode.txt"
	log "profile $mode: $OUT/keyhole-cpu-$mode.pprof, by area in keyhole-areas-pprof-$mode.txt ($txns transactions)"
	if perf_works; then
		txns="$(under_load keyhole "$mode" perf record -q -g -e cpu-clock -p "$KEYHOLE_PID" -o "$OUT/perf-$mode.data" -- sleep "$PROFILE_SECONDS")"
		perf script -i "$OUT/perf-$mode.data" 2>/dev/null >"$WORK/perf.script"
		python3 "$ROOT/scripts/profile_areas.py" perf "$WORK/perf.script" --txns "$txns" >"$OUT/keyhole-areas-perf-$mode.txt"
		perf report -i "$OUT/perf-$mode.data" --stdio --no-children --sort dso,sym 2>/dev/null |
			grep -E '^ +[0-9.]+%' | head -60 >"$OUT/perf-$mode-top.txt" || true
		log "perf $mode: $OUT/perf-$mode.data, by area in keyhole-areas-perf-$mode.txt ($txns transactions)"
	else
		log "perf cannot sample here; Go profile only"
	fi
}
mkdir -p "$OUT"
if has_suite pg && { [ "$PROFILE" = 1 ] || [ "$PROFILE" = counts ]; }; then
	if [ "$PROFILE" = 1 ]; then
		for mode in "${MODES[@]}"; do
			profile "$mode"
		done
	fi
	if perf_works; then
		for mode in "${MODES[@]}"; do
			for target in "${TARGETS[@]}"; do
				[ "$target" = direct ] || count_syscalls "$target" "$mode"
			done
		done
	fi
fi

if has_suite mysql; then
	bench_mysql
fi

meta loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
if has_suite pg && grep -q '"level":"ERROR"' "$WORK/keyhole.log"; then
	log "keyhole logged errors:"
	grep '"level":"ERROR"' "$WORK/keyhole.log" | head -5 >&2
fi
has_suite pg && meta audit_events "$(wc -l <"$WORK/audit.jsonl")"

# --- report ------------------------------------------------------------------
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
CLK_TCK="$CLK_TCK" python3 "$ROOT/scripts/bench_report.py" "$RESULTS" "$OUT/bench-$stamp.json" | tee "$OUT/bench-$stamp.txt"
cp "$OUT/bench-$stamp.json" "$OUT/latest.json"
cp "$RESULTS" "$OUT/bench-$stamp.tsv" # raw lines: bench_report.py renders them again
log "wrote $OUT/bench-$stamp.json and .txt"
exit
}
