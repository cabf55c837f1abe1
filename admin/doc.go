// Package admin is keyhole's operator HTTP surface: Prometheus metrics
// (/metrics), a health check (/healthz), the security team's review page
// of blocked statements (/audit) and, only when enabled, Go's profiler
// (/debug/pprof/). It has no authentication of its own: bind it to
// loopback or a private network.
package admin
