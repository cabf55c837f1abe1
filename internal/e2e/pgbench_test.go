package e2e_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/testpg"
)

// benchPolicy allows what pgbench's built-in scripts do and nothing else.
const benchPolicy = `
roles:
  bench:
    upstream: bench
    allow:
      - select: [public.pgbench_accounts, public.pgbench_branches, public.pgbench_tellers, public.pgbench_history]
      - update: [public.pgbench_accounts, public.pgbench_branches, public.pgbench_tellers]
      - insert: [public.pgbench_history]
agents:
  bench-agent: {role: bench}
`

// TestPgbench runs pgbench's select-only and TPC-B scripts through keyhole
// in both simple and extended (prepared) protocol.
func TestPgbench(t *testing.T) {
	pgbench := needTool(t, "pgbench")
	login := testpg.NewRole(t, "")
	db := testpg.New(t, "")
	u, err := pgURL(db.DSN)
	require.NoError(t, err)

	// pgbench -i straight to Postgres, as the superuser.
	init := exec.Command(pgbench, "-i", "-s", "1", "-q", "-h", u.host, "-p", u.port, "-U", u.user, db.Name)
	out, err := init.CombinedOutput()
	require.NoError(t, err, "pgbench -i: %s", out)
	up := &upstream{DB: db, Login: login}
	_, err = up.adminExec(t, fmt.Sprintf("GRANT ALL ON ALL TABLES IN SCHEMA public TO %s", login))
	require.NoError(t, err)

	key := newAgentKey(t)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	writeFile(t, policy, benchPolicy)
	kh := startKeyhole(t, nil,
		"--upstream", up.URL(),
		"--policy", policy,
		"--token-key", key.Public,
		"--audit", filepath.Join(dir, "audit.jsonl"),
		"--listen-postgres", "127.0.0.1:0",
	)
	token := key.mint(t, "bench-agent")
	host, port := kh.HostPort()

	history := func() int { return mustAtoi(t, up.AdminQuery(t, "SELECT count(*) FROM pgbench_history")) }
	cases := []struct {
		name       string
		args       []string
		newHistory int
	}{
		{"select-only simple", []string{"-S", "-M", "simple"}, 0},
		{"select-only prepared", []string{"-S", "-M", "prepared"}, 0},
		{"tpcb simple", []string{"-M", "simple"}, 100},
		{"tpcb prepared", []string{"-M", "prepared"}, 100},
		{"tpcb extended", []string{"-M", "extended"}, 100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := history()
			// -n: no VACUUM before the run (a maintenance command the
			// bench role may not run).
			args := append([]string{"-n", "-t", "50", "-c", "2", "-h", host, "-p", port, "-U", "bench-agent"}, tc.args...)
			args = append(args, db.Name) // the same database name as a direct run
			cmd := exec.Command(pgbench, args...)
			cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGSSLMODE=require")
			var o, e bytes.Buffer
			cmd.Stdout, cmd.Stderr = &o, &e
			start := time.Now()
			require.NoError(t, cmd.Run(), "pgbench %v:\n%s\n%s", args, o.String(), e.String())
			t.Logf("pgbench %v: %s", tc.args, time.Since(start).Round(time.Millisecond))
			assert.Contains(t, o.String(), "number of transactions actually processed: 100/100")
			assert.Equal(t, before+tc.newHistory, history())
		})
	}

	t.Run("denied statements still denied", func(t *testing.T) {
		cmd := exec.Command(needTool(t, "psql"), "-X", "-v", "VERBOSITY=verbose",
			fmt.Sprintf("host=%s port=%s user=bench-agent dbname=%s sslmode=require", host, port, db.Name),
			"-c", "TRUNCATE pgbench_history")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+token)
		out, err := cmd.CombinedOutput()
		require.Error(t, err)
		assert.Contains(t, string(out), "42501")
	})
}
