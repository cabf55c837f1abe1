package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
)

func TestStoreAndApprovalsDefaults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "keyhole.yaml")
	require.NoError(t, os.WriteFile(path, []byte(minimal), 0o600))
	c, err := config.Load(path)
	require.NoError(t, err)
	c.ApplyDefaults()
	assert.Equal(t, "sqlite:"+filepath.Join(dir, config.DefaultStoreFile), c.Store.URL, "next to the audit file")
	assert.Equal(t, config.DefaultMaxGrant, c.Approvals.MaxDuration)
	assert.Equal(t, config.DefaultGrantDurations, c.Approvals.Durations)
	assert.Equal(t, config.DefaultDenialRetention, c.Store.Retention.Denials)
	assert.Equal(t, 200*time.Millisecond, c.Store.SyncInterval)
	assert.Equal(t, config.DefaultConsoleSession, c.Console.SessionTTL)
}

// An audit "file" that is a device or lives under /dev or /proc is no
// place for the default store: it goes next to keyhole.yaml instead.
func TestDefaultStoreNotNextToADevice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "logs", "audit.fifo")
	require.NoError(t, os.Mkdir(filepath.Dir(fifo), 0o700))
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	for _, audit := range []string{"/dev/null", "/dev/stdout", "/proc/self/fd/1", fifo} {
		path := filepath.Join(dir, "keyhole.yaml")
		c, err := config.Parse(path, []byte(strings.Replace(minimal, "audit: {file: audit.jsonl}", "audit: {file: "+audit+"}", 1)))
		require.NoError(t, err, audit)
		require.Equal(t, audit, c.Audit.File)
		c.ApplyDefaults()
		assert.Equal(t, "sqlite:"+filepath.Join(dir, config.DefaultStoreFile), c.Store.URL, audit)
	}
}

func TestStoreForms(t *testing.T) {
	t.Parallel()
	c, err := config.Parse("k.yaml", []byte(minimal+"store: postgres://keyhole@db.internal/keyhole?sslmode=verify-full\n"))
	require.NoError(t, err)
	assert.Equal(t, "postgres://keyhole@db.internal/keyhole?sslmode=verify-full", c.Store.URL)

	c, err = config.Parse("k.yaml", []byte(minimal+`store:
  url: postgres://keyhole@db/keyhole
  password_env: STORE_PW
  retention: {denials: 72h, history: 720h}
  sync_interval: 100ms
`))
	require.NoError(t, err)
	assert.Equal(t, 72*time.Hour, c.Store.Retention.Denials)
	assert.Equal(t, 100*time.Millisecond, c.Store.SyncInterval)
	require.Error(t, c.ResolveSecrets(func(string) string { return "" }))
	require.NoError(t, c.ResolveSecrets(func(k string) string { return map[string]string{"STORE_PW": "pw", "TEST_PW": "x"}[k] }))
	assert.Equal(t, "pw", c.Store.Password.Reveal())
}

func TestApprovalsValidation(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"unknown store key":         "store: {url: sqlite:x.db, path: y}\n",
		"unknown retention key":     "store: {url: sqlite:x.db, retention: {forever: 1h}}\n",
		"store password in URL":     "store: postgres://keyhole:secret@db/keyhole\n",
		"store scheme":              "store: mysql://db/keyhole\n",
		"sync slower than 1s":       "store: {url: sqlite:x.db, sync_interval: 2s}\n",
		"preset over the maximum":   "approvals: {max_duration: 1h, durations: [15m, 2h]}\n",
		"negative maximum":          "approvals: {max_duration: -1h}\n",
		"proxy without trusted":     "console: {proxy_auth: {approvers: [sec]}}\n",
		"proxy with a bad address":  "console: {proxy_auth: {trusted: [proxy.local], approvers: [sec]}}\n",
		"proxy without roles":       "console: {proxy_auth: {trusted: [10.0.0.0/8]}}\n",
		"replica out of range":      "cluster: {replica: 200}\n",
		"peers without replica":     "cluster: {peers: {2: 127.0.0.1:6433}}\n",
		"peer is itself":            "cluster: {replica: 1, peers: {1: 127.0.0.1:6433}}\n",
		"peer address":              "cluster: {replica: 1, peers: {2: nowhere}}\n",
		"replicas on sqlite":        "store: sqlite:x.db\ncluster: {replica: 1, peers: {2: 127.0.0.1:6433}}\n",
		"console tls without admin": "console: {tls: true}\n",
	}
	for name, extra := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse("k.yaml", []byte(minimal+extra))
			require.Error(t, err)
			assert.ErrorIs(t, err, config.ErrInvalid)
		})
	}
	_, err := config.Parse("k.yaml", []byte(minimal+"store: postgres://keyhole@db/keyhole\ncluster: {replica: 1, peers: {2: 127.0.0.1:6433}}\nconsole: {proxy_auth: {trusted: [127.0.0.1, 10.0.0.0/8], approvers: [sec]}}\n"))
	require.NoError(t, err)
}
