package gateway

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
)

// agentRevoker is a credential source that can revoke an agent's leases at
// once (creds.Vault): the agent's upstream sessions then end.
type agentRevoker interface {
	RevokeAgent(agent string)
}

// healthChecker is a part whose failure makes /healthz unhealthy (the
// audit sinks, the Vault source). Its error text carries no secret.
type healthChecker interface {
	Healthy() error
}

// buildCreds is the credential source of every upstream: the Vault source,
// or the static logins (a --upstream URL's own login wins over
// creds.static for its upstream).
func buildCreds(cfg *config.Config, log *slog.Logger) (creds.Source, error) {
	if v := cfg.Creds.Vault; v != nil {
		src, err := creds.NewVault(v.VaultConfig, log)
		if err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		return src, nil
	}
	m := staticLogins{}
	for name, u := range cfg.Upstreams {
		st := cfg.Creds.Static
		if u.Login != nil && u.Login.User != "" {
			st = u.Login
		}
		if st == nil {
			return nil, fmt.Errorf("upstream %q: no login (creds.static or a user in its --upstream URL)", name)
		}
		m[name] = &creds.Static{User: st.User, Password: st.Password}
	}
	return m, nil
}

// staticLogins hands out each upstream's static login. A request names the
// role's upstream; the single upstream "" of --upstream URL serves every
// name, as in the front ends.
type staticLogins map[string]*creds.Static

func (m staticLogins) Acquire(ctx context.Context, req creds.Request) (*creds.Lease, error) {
	s, ok := m[req.Upstream]
	if !ok {
		s, ok = m[""]
	}
	if !ok {
		return nil, fmt.Errorf("no static login for upstream %q: %w", req.Upstream, creds.ErrUnavailable)
	}
	return s.Acquire(ctx, req)
}

func (m staticLogins) Close() error { return nil }
