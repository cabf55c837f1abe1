package admin

import (
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Metrics implements ProxyMetrics with Prometheus collectors, plus the
// credential health gauges the creds package reports.
type Metrics struct {
	reg *prometheus.Registry

	connections *prometheus.CounterVec
	open        *prometheus.GaugeVec
	authFails   *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	statements  *prometheus.CounterVec
	decision    *prometheus.HistogramVec
	upstreamErr *prometheus.CounterVec
	upLogins    *prometheus.CounterVec
	upKept      *prometheus.GaugeVec
	credsOK     prometheus.Gauge
	vaultErrs   prometheus.Counter

	// Children of the per-statement vectors, cached: WithLabelValues
	// hashes the label values and takes the vector's lock on every call.
	// The label values are a protocol, a decision and a policy rule name,
	// so the caches are as bounded as the vectors themselves. They are
	// read-only maps swapped whole when a child is added (rarely: once
	// per rule): a lookup is a plain map index, where a sync.Map hashes
	// its key through an interface.
	children   atomic.Pointer[metricChildren]
	childrenMu sync.Mutex // serializes adding
}

type metricChildren struct {
	stmt     map[stmtKey]prometheus.Counter
	decision map[string]prometheus.Observer
}

type stmtKey struct {
	protocol string
	effect   sqlpolicy.Effect
	rule     string
}

var _ ProxyMetrics = (*Metrics)(nil)

// NewMetrics registers keyhole's metrics in reg. With a nil reg a new
// registry is made that also carries the Go runtime and process collectors.
func NewMetrics(reg *prometheus.Registry) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	proto := []string{"protocol"}
	m := &Metrics{
		reg: reg,
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyhole_connections_total", Help: "Client connections accepted.",
		}, proto),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keyhole_connections_open", Help: "Client connections currently open.",
		}, proto),
		authFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyhole_auth_failures_total", Help: "Failed agent authentications.",
		}, proto),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyhole_logins_dropped_total",
			Help: "Connections still logging in that were dropped to make room (limits.max_startups): a flood of connections that do not log in.",
		}, proto),
		statements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyhole_statements_total", Help: "Statements decided, by decision and deciding rule.",
		}, []string{"protocol", "decision", "rule"}),
		decision: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keyhole_decision_seconds", Help: "Time to analyze and decide one statement text.",
			// Parse+decide is tens of microseconds to a few milliseconds.
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 9),
		}, proto),
		upstreamErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyhole_upstream_errors_total", Help: "Failures dialing or talking to the upstream database.",
		}, proto),
		upLogins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyhole_upstream_sessions_total",
			Help: "Upstream sessions agent sessions started on: reused=\"true\" for a kept session taken over, else a new login.",
		}, []string{"protocol", "reused"}),
		upKept: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keyhole_upstream_sessions_kept",
			Help: "Upstream sessions reset and kept, logged in, for the next session that logs in the same way.",
		}, proto),
		credsOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyhole_creds_available", Help: "1 when upstream credentials can be issued, 0 when not.",
		}),
		vaultErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyhole_vault_errors_total", Help: "Failed Vault requests (issue, renew, revoke).",
		}),
	}
	reg.MustRegister(m.connections, m.open, m.authFails, m.dropped, m.statements, m.decision, m.upstreamErr, m.upLogins, m.upKept, m.credsOK, m.vaultErrs)
	return m
}

// Registry is the registry /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ConnectionOpened implements ProxyMetrics.
func (m *Metrics) ConnectionOpened(protocol string) {
	m.connections.WithLabelValues(protocol).Inc()
	m.open.WithLabelValues(protocol).Inc()
}

// ConnectionClosed implements ProxyMetrics.
func (m *Metrics) ConnectionClosed(protocol string) { m.open.WithLabelValues(protocol).Dec() }

// AuthFailed implements ProxyMetrics.
func (m *Metrics) AuthFailed(protocol string) { m.authFails.WithLabelValues(protocol).Inc() }

// LoginDropped implements LoginGateMetrics.
func (m *Metrics) LoginDropped(protocol string) { m.dropped.WithLabelValues(protocol).Inc() }

// StatementDecided implements ProxyMetrics. rule is a policy rule name, so
// its cardinality is bounded by the policy.
func (m *Metrics) StatementDecided(protocol string, effect sqlpolicy.Effect, rule string, latency time.Duration) {
	k := stmtKey{protocol, effect, rule}
	var (
		c       prometheus.Counter
		o       prometheus.Observer
		ok, ok2 bool
	)
	if ch := m.children.Load(); ch != nil {
		c, ok = ch.stmt[k]
		o, ok2 = ch.decision[protocol]
	}
	if !ok || !ok2 {
		c, o = m.addChildren(k)
	}
	c.Inc()
	o.Observe(latency.Seconds())
}

// addChildren makes the children for k and installs a copy of the maps
// that holds them.
func (m *Metrics) addChildren(k stmtKey) (prometheus.Counter, prometheus.Observer) {
	m.childrenMu.Lock()
	defer m.childrenMu.Unlock()
	old := m.children.Load()
	if old == nil {
		old = &metricChildren{}
	}
	c, ok := old.stmt[k]
	o, ok2 := old.decision[k.protocol]
	if ok && ok2 {
		return c, o
	}
	ch := &metricChildren{stmt: maps.Clone(old.stmt), decision: maps.Clone(old.decision)}
	if ch.stmt == nil {
		ch.stmt = map[stmtKey]prometheus.Counter{}
	}
	if ch.decision == nil {
		ch.decision = map[string]prometheus.Observer{}
	}
	if !ok {
		c = m.statements.WithLabelValues(k.protocol, string(k.effect), k.rule)
		ch.stmt[k] = c
	}
	if !ok2 {
		o = m.decision.WithLabelValues(k.protocol)
		ch.decision[k.protocol] = o
	}
	m.children.Store(ch)
	return c, o
}

// UpstreamError implements ProxyMetrics.
func (m *Metrics) UpstreamError(protocol string) { m.upstreamErr.WithLabelValues(protocol).Inc() }

// UpstreamSessionStarted implements UpstreamReuseMetrics.
func (m *Metrics) UpstreamSessionStarted(protocol string, reused bool) {
	m.upLogins.WithLabelValues(protocol, strconv.FormatBool(reused)).Inc()
}

// UpstreamSessionsKept implements UpstreamReuseMetrics.
func (m *Metrics) UpstreamSessionsKept(protocol string, n int) {
	m.upKept.WithLabelValues(protocol).Set(float64(n))
}

// SetCredsHealthy sets keyhole_creds_available.
func (m *Metrics) SetCredsHealthy(ok bool) {
	if ok {
		m.credsOK.Set(1)
	} else {
		m.credsOK.Set(0)
	}
}

// VaultError counts one failed Vault request.
func (m *Metrics) VaultError() { m.vaultErrs.Inc() }
