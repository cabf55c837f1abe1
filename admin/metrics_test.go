package admin_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/admin"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := admin.NewMetrics(reg)
	var pm admin.ProxyMetrics = m

	pm.ConnectionOpened("postgres")
	pm.ConnectionOpened("postgres")
	pm.ConnectionClosed("postgres")
	pm.ConnectionOpened("mysql")
	pm.AuthFailed("mysql")
	pm.StatementDecided("postgres", sqlpolicy.Allow, "roles.analyst.allow[0]", 200*time.Microsecond)
	pm.StatementDecided("postgres", sqlpolicy.Deny, "default-deny", time.Millisecond)
	pm.StatementDecided("postgres", sqlpolicy.Deny, "default-deny", time.Millisecond)
	pm.UpstreamError("postgres")
	m.SetCredsHealthy(true)
	m.VaultError()
	var rm admin.UpstreamReuseMetrics = m
	rm.UpstreamSessionStarted("postgres", false)
	rm.UpstreamSessionStarted("postgres", true)
	rm.UpstreamSessionStarted("postgres", true)
	rm.UpstreamSessionsKept("postgres", 3)
	rm.UpstreamSessionsKept("postgres", 2)
	var gm admin.LoginGateMetrics = m
	gm.LoginDropped("mysql")

	want := `
# HELP keyhole_connections_open Client connections currently open.
# TYPE keyhole_connections_open gauge
keyhole_connections_open{protocol="mysql"} 1
keyhole_connections_open{protocol="postgres"} 1
# HELP keyhole_connections_total Client connections accepted.
# TYPE keyhole_connections_total counter
keyhole_connections_total{protocol="mysql"} 1
keyhole_connections_total{protocol="postgres"} 2
# HELP keyhole_auth_failures_total Failed agent authentications.
# TYPE keyhole_auth_failures_total counter
keyhole_auth_failures_total{protocol="mysql"} 1
# HELP keyhole_logins_dropped_total Connections still logging in that were dropped to make room (limits.max_startups): a flood of connections that do not log in.
# TYPE keyhole_logins_dropped_total counter
keyhole_logins_dropped_total{protocol="mysql"} 1
# HELP keyhole_statements_total Statements decided, by decision and deciding rule.
# TYPE keyhole_statements_total counter
keyhole_statements_total{decision="allow",protocol="postgres",rule="roles.analyst.allow[0]"} 1
keyhole_statements_total{decision="deny",protocol="postgres",rule="default-deny"} 2
# HELP keyhole_upstream_errors_total Failures dialing or talking to the upstream database.
# TYPE keyhole_upstream_errors_total counter
keyhole_upstream_errors_total{protocol="postgres"} 1
# HELP keyhole_upstream_sessions_total Upstream sessions agent sessions started on: reused="true" for a kept session taken over, else a new login.
# TYPE keyhole_upstream_sessions_total counter
keyhole_upstream_sessions_total{protocol="postgres",reused="false"} 1
keyhole_upstream_sessions_total{protocol="postgres",reused="true"} 2
# HELP keyhole_upstream_sessions_kept Upstream sessions reset and kept, logged in, for the next session that logs in the same way.
# TYPE keyhole_upstream_sessions_kept gauge
keyhole_upstream_sessions_kept{protocol="postgres"} 2
# HELP keyhole_creds_available 1 when upstream credentials can be issued, 0 when not.
# TYPE keyhole_creds_available gauge
keyhole_creds_available 1
# HELP keyhole_vault_errors_total Failed Vault requests (issue, renew, revoke).
# TYPE keyhole_vault_errors_total counter
keyhole_vault_errors_total 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want),
		"keyhole_connections_open", "keyhole_connections_total", "keyhole_auth_failures_total", "keyhole_logins_dropped_total",
		"keyhole_statements_total", "keyhole_upstream_errors_total", "keyhole_upstream_sessions_total", "keyhole_upstream_sessions_kept",
		"keyhole_creds_available", "keyhole_vault_errors_total"))

	n, err := testutil.GatherAndCount(reg, "keyhole_decision_seconds")
	require.NoError(t, err)
	assert.Equal(t, 1, n)

	m.SetCredsHealthy(false)
	n2, err := testutil.GatherAndCount(reg, "keyhole_creds_available")
	require.NoError(t, err)
	assert.Equal(t, 1, n2)
}

func TestNewMetricsDefaultRegistry(t *testing.T) {
	t.Parallel()
	m := admin.NewMetrics(nil)
	mfs, err := m.Registry().Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	assert.True(t, names["go_goroutines"], "runtime collector registered")
}
