package admin

import (
	"time"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// ProxyMetrics is what the proxies report. *Metrics implements it; a nil
// ProxyMetrics in a proxy config means no metrics.
type ProxyMetrics interface {
	ConnectionOpened(protocol string)
	ConnectionClosed(protocol string)
	AuthFailed(protocol string)
	StatementDecided(protocol string, effect sqlpolicy.Effect, rule string, latency time.Duration)
	UpstreamError(protocol string)
}

// LoginGateMetrics is what a proxy reports, when its ProxyMetrics has this
// method too (*Metrics does), for each connection it dropped while it was
// still logging in, to make room for another (limits.max_startups).
type LoginGateMetrics interface {
	LoginDropped(protocol string)
}

// UpstreamReuseMetrics is what a proxy that keeps upstream sessions for
// reuse reports, when its ProxyMetrics has these methods too (*Metrics
// does): which sessions started on a kept upstream session, and how many
// are kept, logged in, with no client.
type UpstreamReuseMetrics interface {
	UpstreamSessionStarted(protocol string, reused bool)
	UpstreamSessionsKept(protocol string, n int)
}
