package gateway

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"

	"github.com/keyholedb/keyhole/admin"
	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/pgproxy"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// FrontEnd is one protocol's server: it accepts agent connections on a
// listener, decides every statement with its Decider and relays what is
// allowed. pgproxy.Server is one; a MySQL front end is another.
type FrontEnd interface {
	// Serve accepts connections on ln until Shutdown or Close; it returns
	// an error then too, which the gateway ignores once it is stopping.
	Serve(ln net.Listener) error
	// Shutdown stops accepting, lets statements in flight finish until
	// ctx is done, then ends every session (Postgres 57P01, MySQL 1053).
	Shutdown(ctx context.Context) error
	// Close ends every session at once.
	Close() error
}

// AgentEnder is a FrontEnd that can end an agent's sessions at once, used
// when a reload removes the agent or changes its role. Front ends without
// it end such sessions at their next statement (the Decider no longer
// maps the agent to the session's role), or when the agent's credential
// lease is revoked.
type AgentEnder interface {
	EndAgent(agent string)
}

// TokenEnder is a FrontEnd that ends the sessions of agents that logged
// in with a token whose id (jti) is in revoked, returning how many it
// ended. The gateway calls it every second while tokens.revoked_file is
// set; a front end without it leaves such sessions open until they end.
type TokenEnder interface {
	EndTokens(revoked map[string]bool) int
}

// The Postgres front end reports upstream session reuse through the
// gateway's metrics (keyhole_upstream_sessions_total, _kept).
var _ pgproxy.ReuseMetrics = (*admin.Metrics)(nil)

// SecretEnder is a FrontEnd that ends the sessions that logged in with a
// stored secret (SCRAM, MySQL) of the agents changes names for its
// protocol, returning how many it ended. The gateway calls it after the
// verifier files are read again (on change, and at SIGHUP).
type SecretEnder interface {
	EndSecrets(changes identity.SecretChanges) int
}

var (
	_ SecretEnder = pgFrontEnd{}
	_ SecretEnder = myFrontEnd{}
	_ TokenEnder  = pgFrontEnd{}
	_ TokenEnder  = myFrontEnd{}
	_ AgentEnder  = pgFrontEnd{}
	_ AgentEnder  = myFrontEnd{}
)

// FrontEndConfig is what the gateway hands a protocol's front end.
type FrontEndConfig struct {
	TLS     *tls.Config
	Decider sqlpolicy.Decider
	Auth    identity.Authenticator
	// Limiter limits guessing of agent secrets; one is shared by every
	// front end.
	Limiter *identity.Limiter
	Creds   creds.Source
	// Upstreams are the configured upstreams of the front end's dialect,
	// by name; "" is the single upstream every role uses.
	Upstreams map[string]Upstream
	Audit     audit.Recorder
	// Metrics is what the front end reports to (the gateway's
	// Prometheus collectors); nil = none.
	Metrics admin.ProxyMetrics
	Logger  *slog.Logger
	// Limits are filled with their defaults (config.ApplyDefaults).
	Limits        config.Limits
	RawStatements bool
	// RSAKey (MySQL) answers caching_sha2_password's public-key requests;
	// nil = a 4096-bit key generated at start (which takes seconds).
	RSAKey *rsa.PrivateKey
	// Replica and ForwardCancel: cancel forwarding between replicas
	// (cancel.go); zero and nil for a single keyhole.
	Replica       uint8
	ForwardCancel func(replica uint8, pid uint32, secret []byte)
}

// protocol is one wire protocol keyhole can serve.
type protocol struct {
	dialect string // the upstream URL scheme it serves (config.Dialect*)
	key     string // its listen key in keyhole.yaml, for messages
	listen  func(*config.Config) string
	// build is nil when this build has no front end for the protocol:
	// upstreams of its dialect and its listen address are then refused.
	build func(FrontEndConfig) (FrontEnd, error)
}

// builder is the function that builds p's front end: the one of builds
// (Options.FrontEnds) for its dialect, else this build's own; nil when
// there is none.
func (p protocol) builder(builds map[string]func(FrontEndConfig) (FrontEnd, error)) func(FrontEndConfig) (FrontEnd, error) {
	if b := builds[p.dialect]; b != nil {
		return b
	}
	return p.build
}

// protocols are the front ends, in start order.
var protocols = []protocol{
	{dialect: config.DialectPostgres, key: "listen.postgres", listen: func(c *config.Config) string { return c.Listen.Postgres }, build: NewPostgresFrontEnd},
	{dialect: config.DialectMySQL, key: "listen.mysql", listen: func(c *config.Config) string { return c.Listen.MySQL }, build: NewMySQLFrontEnd},
}

// NewPostgresFrontEnd is this build's Postgres front end (pgproxy). An
// Options.FrontEnds entry may adjust the FrontEndConfig the gateway built
// and call it: tests give the front end a recorder or credential source
// of their own this way.
func NewPostgresFrontEnd(c FrontEndConfig) (FrontEnd, error) {
	ups := make(map[string]pgproxy.Upstream, len(c.Upstreams))
	for name, u := range c.Upstreams {
		ups[name] = pgproxy.Upstream{Addr: u.Addr, Database: u.Database, TLS: u.TLS}
	}
	srv, err := pgproxy.New(pgproxy.Config{
		TLS:       c.TLS,
		Decider:   c.Decider,
		Auth:      c.Auth,
		Limiter:   c.Limiter,
		Creds:     c.Creds,
		Upstreams: ups,
		Audit:     c.Audit,
		Metrics:   c.Metrics,
		Logger:    c.Logger,
		Limits: pgproxy.Limits{
			MaxConns:       c.Limits.MaxConns,
			MaxStartups:    c.Limits.MaxStartups,
			MaxPerAgent:    c.Limits.MaxConnsPerAgent,
			StartupTimeout: c.Limits.StartupTimeout,
			IdleTimeout:    c.Limits.IdleTimeout,
			MaxMessageSize: c.Limits.MaxMessageSize,
			BufferMemory:   c.Limits.BufferMemory,
			ShutdownGrace:  c.Limits.ShutdownGrace,
			Relay:          c.Limits.Relay,
			ReuseMax:       c.Limits.UpstreamReuseMax,
			ReuseIdle:      c.Limits.UpstreamReuseIdle,
			MaxNames:       c.Limits.MaxPreparedPerSession,
		},
		RawStatements: c.RawStatements,
		Replica:       c.Replica,
		ForwardCancel: c.ForwardCancel,
	})
	if err != nil {
		return nil, err
	}
	return pgFrontEnd{srv}, nil
}

// pgFrontEnd gives pgproxy.Server the Close of FrontEnd.
type pgFrontEnd struct{ *pgproxy.Server }

// Close is a Shutdown whose deadline has passed: every session ends now.
// EndAgent implements AgentEnder.
func (p pgFrontEnd) EndAgent(agent string) { p.Server.EndAgent(agent) }

func (p pgFrontEnd) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
