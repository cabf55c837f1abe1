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
