package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
)

func TestMain(m *testing.M) { fixture.Main(m) }

// needTool fails the test (never skips) when a client binary is missing.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: run scripts/setup.sh (as root) to install the e2e clients", name)
	}
	return p
}

// run runs the keyhole binary and returns its stdout; it fails the test on
// a non-zero exit.
func runKeyhole(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(fixture.BuildKeyhole(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("keyhole %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// upstream is a throwaway database and the non-superuser login keyhole
// uses for it. The login may do everything on the tables: what an agent may
// do is the policy's business, so a denied DELETE is stopped by keyhole and
// not by a missing grant.
type upstream struct {
	DB    *testpg.DB
	Login string
}

// URL is the --upstream value (no password: trust auth on the test server).
func (u *upstream) URL() string { return testpg.WithUser(u.DB.DSN, u.Login, "") }

// AdminQuery runs a query as the superuser directly against the database
// and returns the first column of the first row as text.
func (u *upstream) AdminQuery(t *testing.T, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, u.DB.DSN)
	require.NoError(t, err)
	defer c.Close(ctx)
	var v any
	require.NoError(t, c.QueryRow(ctx, sql).Scan(&v))
	return fmt.Sprint(v)
}

func newUpstream(t *testing.T, setupSQL string) *upstream {
	t.Helper()
	// The role first: cleanups run last-in first-out, so the database
	// (holding the grants) is dropped before the role.
	login := testpg.NewRole(t, "")
	grants := fmt.Sprintf(`
GRANT USAGE ON SCHEMA public TO %[1]s;
GRANT ALL ON ALL TABLES IN SCHEMA public TO %[1]s;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO %[1]s;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO %[1]s;
`, login)
	db := testpg.New(t, setupSQL+"\n"+grants)
	return &upstream{DB: db, Login: login}
}

// agentKey is an Ed25519 token key pair made with `keyhole token keygen`.
type agentKey struct {
	Private, Public string
}

func newAgentKey(t *testing.T) agentKey {
	t.Helper()
	dir := t.TempDir()
	k := agentKey{Private: filepath.Join(dir, "token.key"), Public: filepath.Join(dir, "token.key.pub")}
	runKeyhole(t, "token", "keygen", "--out", k.Private)
	return k
}

// mint returns a token for agent, made with `keyhole token mint`.
func (k agentKey) mint(t *testing.T, agent string, extra ...string) string {
	t.Helper()
	args := append([]string{"token", "mint", "--token-key", k.Private, "--agent", agent, "--ttl", "1h"}, extra...)
	return strings.TrimSpace(runKeyhole(t, args...))
}

// proc is a running `keyhole serve`.
type proc struct {
	t         *testing.T
	cmd       *exec.Cmd
	PGAddr    string
	AdminAddr string
	AuditFile string
	// DB is the database name agents ask for: the upstream's own (as
	// keyhole logs it at start), so an agent's connection string differs
	// from a direct one only in host, port, user and password.
	DB string

	mu     sync.Mutex
	log    bytes.Buffer
	exited chan struct{}
	err    error
}

// startKeyhole starts `keyhole serve args...` and waits for its ready log
// line. Pass --listen-postgres 127.0.0.1:0 (and --admin 127.0.0.1:0): the
// real addresses are read from the ready line. The process is stopped when
// the test ends.
func startKeyhole(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, exited: make(chan struct{})}
	p.cmd = exec.Command(fixture.BuildKeyhole(t), append([]string{"serve", "--log-format", "json"}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = io.Discard
	stderr, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())

	ready := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "upstream" {
				p.mu.Lock()
				if p.DB == "" {
					p.DB, _ = m["database"].(string)
				}
				p.mu.Unlock()
			}
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "keyhole ready" {
				select {
				case ready <- m:
				default:
				}
			}
		}
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("keyhole log:\n%s", p.Log())
		}
	})

	select {
	case m := <-ready:
		p.PGAddr, _ = m["postgres"].(string)
		p.AdminAddr, _ = m["admin"].(string)
	case <-p.exited:
		t.Fatalf("keyhole serve exited before it was ready: %v\n%s", p.err, p.Log())
	case <-time.After(90 * time.Second):
		t.Fatalf("keyhole serve not ready after 90s\n%s", p.Log())
	}
	return p
}

// Log is everything keyhole wrote to stderr so far.
func (p *proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// WaitLog waits until keyhole logs a line containing every one of subs
// after offset (a length of Log() taken earlier) and returns that line.
func (p *proc) WaitLog(offset int, timeout time.Duration, subs ...string) string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		log := p.Log()
		if offset > len(log) {
			offset = len(log)
		}
		for _, line := range strings.Split(log[offset:], "\n") {
			all := true
			for _, s := range subs {
				if !strings.Contains(line, s) {
					all = false
					break
				}
			}
			if all && line != "" {
				return line
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("keyhole did not log %q within %s\n%s", subs, timeout, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Signal sends sig to keyhole.
func (p *proc) Signal(sig os.Signal) {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(sig))
}

// Wait waits for keyhole to exit and returns its exit code.
func (p *proc) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.exited:
	case <-time.After(timeout):
		return -1, fmt.Errorf("keyhole still running after %s", timeout)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode(), nil
	}
	if p.err != nil {
		return -1, p.err
	}
	return 0, nil
}

func (p *proc) dbName() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.DB
}

// HostPort splits PGAddr.
func (p *proc) HostPort() (string, string) {
	i := strings.LastIndexByte(p.PGAddr, ':')
	return p.PGAddr[:i], p.PGAddr[i+1:]
}

// ConnString is a libpq keyword/value connection string for agent with
// token: the only things that differ from a direct connection are host,
// port, user and password.
func (p *proc) ConnString(agent, token string) string {
	h, port := p.HostPort()
	return fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=%s sslmode=require", h, port, agent, token, p.dbName())
}

// auditEvents reads the audit file's events (JSON lines).
func auditEvents(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "audit line is not JSON: %s", line)
		out = append(out, m)
	}
	return out
}

// waitAudit polls the audit file until match finds an event.
func waitAudit(t *testing.T, path string, timeout time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, ev := range auditEvents(t, path) {
			if match(ev) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(path)
			t.Fatalf("no matching audit event within %s; audit file:\n%s", timeout, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

type pgParts struct{ host, port, user string }

// pgURL splits the parts of a postgres:// URL that CLI tools take as flags.
func pgURL(dsn string) (pgParts, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return pgParts{}, err
	}
	p := pgParts{host: u.Hostname(), port: u.Port(), user: u.User.Username()}
	if p.port == "" {
		p.port = "5432"
	}
	return p, nil
}
