package gateway

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/keyholedb/keyhole/admin"
)

// listenAdmin binds the admin listener (console, API, health, and metrics
// unless listen.metrics takes them) and, when set, the metrics listener.
func (g *Gateway) listenAdmin(tlsCfg *tls.Config) error {
	cfg := g.cfg
	console, err := g.consoleHandler()
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	metrics := g.metrics
	if cfg.Listen.Metrics != "" {
		metrics = nil
		if g.metricsLn, err = net.Listen("tcp", cfg.Listen.Metrics); err != nil {
			return fmt.Errorf("listen.metrics: %w", err)
		}
		g.metricsS = adminServer(admin.Handler(admin.HandlerOptions{Metrics: g.metrics, Health: g.health}))
	}
	if g.adminLn, err = net.Listen("tcp", cfg.Listen.Admin); err != nil {
		return fmt.Errorf("listen.admin: %w", err)
	}
	if cfg.Console.TLS {
		if tlsCfg == nil {
			return fmt.Errorf("console.tls: no TLS certificate")
		}
		c := tlsCfg.Clone()
		c.ClientAuth = tls.NoClientCert
		c.NextProtos = []string{"h2", "http/1.1"}
		g.adminLn = tls.NewListener(g.adminLn, c)
	}
	g.adminS = adminServer(admin.Handler(admin.HandlerOptions{
		Metrics: metrics,
		Health:  g.health,
		Pprof:   cfg.Listen.Pprof,
		Console: console,
	}))
	return nil
}

// adminTimeouts bound what a client of the admin listeners can hold: a
// request's headers and whole request (the console's forms are small, and
// its bodies are capped), and a kept-alive connection between requests.
// No write timeout: /debug/pprof/profile answers after its seconds.
var adminTimeouts = struct{ header, read, idle time.Duration }{10 * time.Second, 30 * time.Second, 2 * time.Minute}

// adminServer is an HTTP server for the admin or metrics listener.
func adminServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: adminTimeouts.header,
		ReadTimeout: adminTimeouts.read, IdleTimeout: adminTimeouts.idle}
}

// MetricsAddr is where the metrics listener listens, or nil when it is
// off (then /metrics is on the admin listener).
func (g *Gateway) MetricsAddr() net.Addr {
	if g.metricsLn == nil {
		return nil
	}
	return g.metricsLn.Addr()
}
