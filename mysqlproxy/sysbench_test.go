package mysqlproxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/testmy"
	"github.com/keyholedb/keyhole/mysqlproxy"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// benchDecider allows sysbench's point select, whatever its literal, and
// nothing else: a wire benchmark's stand-in for the policy engine (with
// the real engine a repeated statement is a decision-cache hit).
type benchDecider struct{ *tableDecider }

var pointSelect = regexp.MustCompile(`^SELECT c FROM sbtest1 WHERE id=(\?|\d+)$`)

func (b benchDecider) Check(p sqlpolicy.Principal, sql string, s sqlpolicy.Session) (*sqlpolicy.Decision, *sqlpolicy.Access) {
	if p.Agent == "bench" && pointSelect.MatchString(sql) {
		return benchAllow, benchAccess
	}
	return b.tableDecider.Check(p, sql, s)
}

// NewSession: the benchmark keeps no session history.
func (b benchDecider) NewSession() sqlpolicy.Session { return nopSession{} }

type nopSession struct{}

func (nopSession) Generation() uint64                 { return 0 }
func (nopSession) Note(*sqlpolicy.Access)             {}
func (nopSession) Apply(*sqlpolicy.Access)            {}
func (nopSession) ApplyUncommitted(*sqlpolicy.Access) {}
func (nopSession) Reset()                             {}

var (
	benchAllow  = &sqlpolicy.Decision{Effect: sqlpolicy.Allow, Rule: "roles.bench.allow[0]", Redacted: "SELECT c FROM sbtest1 WHERE id=?", Fingerprint: "fp"}
	benchAccess = &sqlpolicy.Access{Statements: []sqlpolicy.Statement{{Verb: sqlpolicy.VerbSelect}}}
)

// cpuMicros is this process's user+system CPU time.
func cpuMicros(t testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/stat")
	require.NoError(t, err)
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return (ut + st) * 10000 // USER_HZ is 100 on Linux
}

// naiveRelay is the baseline: accept, dial the upstream, two io.Copy.
func naiveRelay(t testing.TB, upstream string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				u, err := net.Dial("tcp", upstream)
				if err != nil {
					_ = c.Close()
					return
				}
				go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
				_, _ = io.Copy(c, u)
				_ = c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// TestSysbenchPointSelect compares sysbench oltp_point_select (8 threads)
// direct, through a naive relay and through keyhole, alternated, for
// --db-ps-mode auto and disable. It prints queries/s, the ratio to direct
// and the proxy's CPU per query (this process's CPU, so only one proxy
// runs at a time). Run it with KEYHOLE_SYSBENCH=1 (make bench); it is a
// measurement, not a pass/fail test.
func TestSysbenchPointSelect(t *testing.T) {
	if os.Getenv("KEYHOLE_SYSBENCH") == "" {
		t.Skip("set KEYHOLE_SYSBENCH=1 to run the sysbench comparison")
	}
	bin, err := exec.LookPath("sysbench")
	require.NoError(t, err, "sysbench is needed (scripts/setup.sh installs it)")
	secs := 10
	if v, err := strconv.Atoi(os.Getenv("KEYHOLE_SYSBENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	db := testmy.New(t, "")
	pw := "bench-" + testmy.RandHex(6)
	user := testmy.NewUser(t, pw, "ALL ON "+db.Name+".*")
	run := func(addr, user, pw, mode, cmd string) float64 {
		host, port, _ := strings.Cut(addr, ":")
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+60)*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "oltp_point_select", "--db-driver=mysql",
			"--mysql-host="+host, "--mysql-port="+port, "--mysql-user="+user, "--mysql-password="+pw,
			"--mysql-db="+db.Name, "--tables=1", "--table-size=10000", "--threads=8",
			"--time="+strconv.Itoa(secs), "--db-ps-mode="+mode, cmd).CombinedOutput()
		require.NoError(t, err, "%s", out)
		if cmd != "run" {
			return 0
		}
		m := regexp.MustCompile(`queries:\s+(\d+)\s+\(([\d.]+) per sec`).FindSubmatch(out)
		require.NotNil(t, m, "%s", out)
		n, _ := strconv.ParseFloat(string(m[1]), 64)
		return n
	}
	run(testmy.Addr(), user, pw, "auto", "prepare")

	secret := identity.NewSecret()
	auth, err := identity.New(identity.Config{MySQL: identity.MySQLConfig{Verifiers: map[string]string{"bench": identity.NewMySQLVerifier(secret).String()}}})
	require.NoError(t, err)
	dec := newTableDecider()
	dec.agents["bench"] = "bench"
	dec.allow("bench", 0, "USE `"+db.Name+"`")
	srv, err := mysqlproxy.New(mysqlproxy.Config{
		Decider: benchDecider{dec}, Auth: auth,
		Creds:     &creds.Static{User: user, Password: creds.Secret(pw)},
		Upstreams: map[string]mysqlproxy.Upstream{"": {Addr: testmy.Addr()}},
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		RSAKey:    testRSAKey(t),
	})
	require.NoError(t, err)
	khAddr := serve(t, srv)
	naiveAddr := naiveRelay(t, testmy.Addr())

	targets := []string{"direct", "naive", "keyhole"}
	if v := os.Getenv("KEYHOLE_SYSBENCH_TARGETS"); v != "" {
		targets = strings.Split(v, ",")
	}
	modes := []string{"auto", "disable"}
	if v := os.Getenv("KEYHOLE_SYSBENCH_MODES"); v != "" {
		modes = strings.Split(v, ",")
	}
	type result struct{ queries, cpu, secs float64 }
	results := map[string]*result{}
	for round := range 2 {
		for _, mode := range modes {
			for _, target := range targets {
				addr, u, p := testmy.Addr(), user, pw
				switch target {
				case "naive":
					addr = naiveAddr
				case "keyhole":
					addr, u, p = khAddr, "bench", secret
				}
				cpu0, t0 := cpuMicros(t), time.Now()
				q := run(addr, u, p, mode, "run")
				key := mode + "/" + target
				if results[key] == nil {
					results[key] = &result{}
				}
				r := results[key]
				r.queries += q
				r.cpu += float64(cpuMicros(t) - cpu0)
				r.secs += time.Since(t0).Seconds()
				t.Logf("round %d %-8s %-8s %8.0f queries", round, mode, target, q)
			}
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("sysbench oltp_point_select, 8 threads, 2 x %ds per cell, alternated; load average %s", secs, load)
	fmt.Printf("%-8s %-8s %10s %8s %14s\n", "ps-mode", "target", "queries/s", "×direct", "proxy µs CPU/q")
	for _, mode := range modes {
		direct := results[mode+"/direct"]
		for _, target := range targets {
			r := results[mode+"/"+target]
			qps := r.queries / r.secs
			ratio := 0.0
			if direct != nil {
				ratio = qps / (direct.queries / direct.secs)
			}
			cpu := "-"
			if target != "direct" {
				cpu = fmt.Sprintf("%.1f", r.cpu/r.queries)
			}
			fmt.Printf("%-8s %-8s %10.0f %8.2f %14s\n", mode, target, qps, ratio, cpu)
		}
	}
}
