// Package admin is keyhole's operator and reviewer HTTP surface:
// Prometheus metrics (/metrics), a health check (/healthz), Go's profiler
// (/debug/pprof/, only when enabled), and the security team's console and
// API (NewConsole: /console/, /api/v1/, /login).
//
// Only /healthz and /metrics (and the profiler, when enabled) answer
// without authentication. The console authenticates reviewers with local
// accounts (argon2id hashes in a reviewers file), API tokens (SHA-256 in
// the same file) or the headers of a trusted authenticating proxy; a
// session cookie is HttpOnly, SameSite=Strict and Secure over TLS; every
// state change needs the session's CSRF token. Pages are html/template
// under a Content-Security-Policy that allows only the console's own
// script: statement texts are written by agents.
package admin
