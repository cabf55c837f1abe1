package admin

import (
	"sync"
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
	statements  *prometheus.CounterVec
	decision    *prometheus.HistogramVec
	upstreamErr *prometheus.CounterVec
	credsOK     prometheus.Gauge
	vaultErrs   prometheus.Counter

	// Children of the per-statement vectors, cached: WithLabelValues
	// hashes the label values and takes the vector's lock on every call.
	// The label values are a protocol, a decision and a policy rule name,
	// so the caches are as bounded as the vectors themselves.
	stmtChildren     sync.Map // stmtKey → prometheus.Counter
	decisionChildren sync.Map // protocol string → prometheus.Observer
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
		credsOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyhole_creds_available", Help: "1 when upstream credentials can be issued, 0 when not.",
		}),
		vaultErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyhole_vault_errors_total", Help: "Failed Vault requests (issue, renew, revoke).",
		}),
	}
	reg.MustRegister(m.connections, m.open, m.authFails, m.statements, m.decision, m.upstreamErr, m.credsOK, m.vaultErrs)
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

// StatementDecided implements ProxyMetrics. rule is a policy rule name, so
// its cardinality is bounded by the policy.
func (m *Metrics) StatementDecided(protocol string, effect sqlpolicy.Effect, rule string, latency time.Duration) {
	k := stmtKey{protocol, effect, rule}
	c, ok := m.stmtChildren.Load(k)
	if !ok {
		c, _ = m.stmtChildren.LoadOrStore(k, m.statements.WithLabelValues(protocol, string(effect), rule))
	}
	c.(prometheus.Counter).Inc()
	o, ok := m.decisionChildren.Load(protocol)
	if !ok {
		o, _ = m.decisionChildren.LoadOrStore(protocol, m.decision.WithLabelValues(protocol))
	}
	o.(prometheus.Observer).Observe(latency.Seconds())
}

// UpstreamError implements ProxyMetrics.
func (m *Metrics) UpstreamError(protocol string) { m.upstreamErr.WithLabelValues(protocol).Inc() }

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
