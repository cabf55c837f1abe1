package creds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"
)

// Causes a Vault lease's Done closes with (wrapped; test with errors.Is).
var (
	// ErrLeaseRevoked: Vault no longer knows the lease (revoked by an
	// operator, or its token was revoked).
	ErrLeaseRevoked = errors.New("credential lease revoked")
	// ErrLeaseExpired: the lease reached its TTL (its max TTL, or renewal
	// failed until it ran out).
	ErrLeaseExpired = errors.New("credential lease expired")
	// ErrAgentRevoked: RevokeAgent was called for the lease's agent.
	ErrAgentRevoked = errors.New("agent's credentials revoked")
	// ErrClosed: the source was closed.
	ErrClosed = errors.New("credential source closed")
)

// VaultError is a failed Vault request. It carries only the operation and a
// generic class (HTTP status, "unreachable", "timeout"), never Vault's
// response text, which can echo request data. It wraps ErrUnavailable.
type VaultError struct {
	Op     string // e.g. "read creds for role analyst"
	Status int    // HTTP status, 0 if there was no response
	Class  string // "status 403", "unreachable", "timeout", "no data"...
}

func (e *VaultError) Error() string {
	return fmt.Sprintf("vault %s: %s: %v", e.Op, e.Class, ErrUnavailable)
}

func (e *VaultError) Unwrap() error { return ErrUnavailable }

// vaultError classifies err from the Vault API without keeping its text.
func vaultError(op string, err error) *VaultError {
	ve := &VaultError{Op: op, Class: "error"}
	var re *api.ResponseError
	var ne net.Error
	var ue *url.Error
	switch {
	case errors.As(err, &re):
		ve.Status = re.StatusCode
		ve.Class = fmt.Sprintf("status %d", re.StatusCode)
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		ve.Class = "timeout"
	case errors.Is(err, context.Canceled):
		ve.Class = "canceled"
	case errors.As(err, &ue), errors.As(err, &ne):
		ve.Class = "unreachable"
	}
	return ve
}

// Vault is a Source of dynamic credentials from Vault's database secrets
// engine (<mount>/creds/<role>).
//
// One lease per (agent, keyhole role) is shared by all of that agent's
// sessions. It is renewed RenewBefore its expiry. When a renewal comes back
// capped by the role's max TTL, the lease is retired: new sessions get a
// freshly read lease, sessions on the old one keep it until it expires, and
// then its Done closes. A lease is also ended (Done closed, Cause set) when
// Vault rejects its renewal (revoked: detected at the next renewal, so within
// a third of the TTL by default), when renewals fail until it expires,
// on RevokeAgent and on Close. A lease without sessions for Grace is revoked.
//
// When Vault is unreachable, Acquire still hands out a live shared lease;
// without one it fails with an error wrapping ErrUnavailable. There is no
// sticky failure state: the next Acquire tries Vault again.
type Vault struct {
	cfg    VaultConfig
	client *api.Client
	log    *slog.Logger

	authMu       sync.Mutex
	tokenRenewAt time.Time // login methods: renew or log in again after this
	tokenOK      bool
	tokenChecked bool // method token: looked up once

	mu     sync.Mutex
	groups map[leaseKey]*group
	closed bool
	quit   chan struct{} // closed by Close
	wg     sync.WaitGroup

	// onError is called for every failed Vault request (OnError).
	onError atomic.Pointer[func()]
}

var _ Source = (*Vault)(nil)

// OnError has f called once for every failed Vault request (issue, renew
// or revoke a lease, look up, renew or log in for the token), e.g. to
// count them in keyhole_vault_errors_total. f must not block.
func (v *Vault) OnError(f func()) { v.onError.Store(&f) }

// failed classifies a failed request (vaultError) and reports it to
// OnError's function.
func (v *Vault) failed(op string, err error) *VaultError {
	if f := v.onError.Load(); f != nil {
		(*f)()
	}
	return vaultError(op, err)
}

type leaseKey struct{ agent, role string }

// group is the leases of one (agent, role).
type group struct {
	key     leaseKey
	current *vaultLease // what new sessions get
	all     map[*vaultLease]struct{}
	pending *fetch
}

type fetch struct {
	done  chan struct{}
	lease *vaultLease
	err   error
}

type vaultLease struct {
	g        *group
	id       string
	user     string
	password Secret
	// increment is the TTL asked for at renewal: the lease's first duration.
	increment time.Duration
	expires   time.Time
	renewable bool
	// capped: a renewal was cut short by the max TTL; no more renewals.
	capped   bool
	retiring bool // no new sessions
	refs     int
	idleGen  int
	idle     *time.Timer
	ended    bool
	cause    error
	done     chan struct{}
	stop     chan struct{}
	// check is closed when a recheck in flight ends; checked is when the
	// last one started.
	check   chan struct{}
	checked time.Time
}

// NewVault checks cfg and builds a Vault source. It does not contact Vault:
// keyhole starts even while Vault is down, and Acquire logs in on first use.
func NewVault(cfg VaultConfig, logger *slog.Logger) (*Vault, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	acfg := api.DefaultConfig()
	if acfg.Error != nil {
		return nil, fmt.Errorf("vault client config: %w", ErrConfig)
	}
	acfg.Address = cfg.Addr
	acfg.MaxRetries = 0 // retries are ours, with our own timing
	acfg.Timeout = cfg.RequestTimeout
	if cfg.CACert != "" {
		if err := acfg.ConfigureTLS(&api.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("vault ca_cert %s: %w", cfg.CACert, ErrConfig)
		}
	}
	c, err := api.NewClient(acfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", ErrConfig)
	}
	c.SetToken("") // NewClient reads VAULT_TOKEN; the token comes from cfg.Auth only
	v := &Vault{
		cfg:    cfg,
		client: c,
		log:    logger.With("component", "creds.vault", "vault_addr", DisplayAddr(cfg.Addr), "mount", cfg.Mount),
		groups: map[leaseKey]*group{},
		quit:   make(chan struct{}),
	}
	if cfg.Auth.Method == "token" {
		c.SetToken(cfg.Auth.Token.Reveal())
		v.tokenOK = true
	}
	v.wg.Add(1)
	go v.tokenLoop()
	return v, nil
}

// tokenLoop logs in and renews keyhole's own token in the background, so
// that it (and the leases it created) outlives quiet periods.
func (v *Vault) tokenLoop() {
	defer v.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-v.quit:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), v.cfg.RequestTimeout)
		err := v.ensureToken(ctx)
		cancel()
		v.authMu.Lock()
		next := time.Until(v.tokenRenewAt)
		if v.tokenRenewAt.IsZero() {
			next = time.Minute
		}
		v.authMu.Unlock()
		if err != nil {
			next = 5 * time.Second
		}
		t.Reset(max(next, 100*time.Millisecond))
	}
}

// Acquire returns a lease on the shared credential of (req.Agent, req.Role),
// reading one from Vault if there is none.
func (v *Vault) Acquire(ctx context.Context, req Request) (*Lease, error) {
	k := leaseKey{req.Agent, req.Role}
	for attempt := 0; ; attempt++ {
		v.mu.Lock()
		if v.closed {
			v.mu.Unlock()
			return nil, fmt.Errorf("acquire credential for agent %q: %w: %w", req.Agent, ErrUnavailable, ErrClosed)
		}
		g := v.groups[k]
		if g == nil {
			g = &group{key: k, all: map[*vaultLease]struct{}{}}
			v.groups[k] = g
		}
		if l := g.current; l != nil && l.usable(time.Now()) {
			lease := v.hold(l)
			v.mu.Unlock()
			return lease, nil
		}
		p := g.pending
		if p == nil {
			p = &fetch{done: make(chan struct{})}
			g.pending = p
			v.wg.Add(1)
			go v.fetch(g, p)
		}
		v.mu.Unlock()

		select {
		case <-p.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("acquire credential for agent %q: %w: %w", req.Agent, ErrUnavailable, ctx.Err())
		}
		if p.err != nil {
			// Vault failed; a retiring lease that is still valid will do.
			v.mu.Lock()
			if g := v.groups[k]; g != nil && g.current != nil && !g.current.ended && time.Now().Before(g.current.expires) {
				lease := v.hold(g.current)
				v.mu.Unlock()
				return lease, nil
			}
			v.mu.Unlock()
			return nil, fmt.Errorf("acquire credential for agent %q role %q: %w", req.Agent, req.Role, p.err)
		}
		if attempt >= 2 {
			return nil, fmt.Errorf("acquire credential for agent %q: lease ended at once: %w", req.Agent, ErrUnavailable)
		}
	}
}

// usable says whether new sessions may get l.
func (l *vaultLease) usable(now time.Time) bool {
	return !l.ended && !l.retiring && l.expires.Sub(now) > time.Second
}

// hold adds a session to l. v.mu is held.
func (v *Vault) hold(l *vaultLease) *Lease {
	l.refs++
	if l.idle != nil {
		l.idle.Stop()
		l.idle = nil
	}
	l.idleGen++
	var once sync.Once
	return NewLease(l.user, l.password, l.done, func() error {
		v.mu.Lock()
		defer v.mu.Unlock()
		return l.cause
	}, func() { once.Do(func() { v.release(l) }) }).WithRecheck(func(ctx context.Context) bool { return v.recheck(ctx, l) })
}

// recheckEvery bounds how often a lease is checked on its sessions'
// behalf: a burst of refused logins shares one request to Vault.
const recheckEvery = time.Second

// recheck asks Vault whether l still exists, after the upstream refused
// its credential: it renews l, as its renewal loop would, and ends it
// when Vault no longer knows it (400 or 404, as in renewLoop). Concurrent
// calls share one renewal; a renewal is asked at most once per
// recheckEvery. A lease Vault does not let renew cannot be checked this
// way: it is left alone.
func (v *Vault) recheck(ctx context.Context, l *vaultLease) bool {
	v.mu.Lock()
	if l.ended {
		v.mu.Unlock()
		return true
	}
	if c := l.check; c != nil {
		v.mu.Unlock()
		select {
		case <-c:
		case <-ctx.Done():
		}
		v.mu.Lock()
		defer v.mu.Unlock()
		return l.ended
	}
	if !l.renewable || l.capped || time.Since(l.checked) < recheckEvery {
		v.mu.Unlock()
		return false
	}
	c := make(chan struct{})
	l.check = c
	l.checked = time.Now()
	v.mu.Unlock()

	ttl, err := v.renew(l)
	v.mu.Lock()
	defer v.mu.Unlock()
	l.check = nil
	close(c)
	switch {
	case err != nil && (err.Status == 400 || err.Status == 404):
		v.log.Warn("credential lease ended", "agent", l.g.key.agent, "role", l.g.key.role, "db_user", l.user, "reason", "revoked", "class", err.Class, "found", "upstream refused the login")
		v.endLocked(l, fmt.Errorf("vault rejected renewal after the upstream refused the login (%s): %w", err.Class, ErrLeaseRevoked), false)
	case err == nil && !l.ended && ttl >= l.increment:
		l.expires = time.Now().Add(ttl)
	}
	return l.ended
}

func (v *Vault) release(l *vaultLease) {
	v.mu.Lock()
	defer v.mu.Unlock()
	l.refs--
	if l.refs > 0 || l.ended {
		return
	}
	if l.retiring || l.g.current != l {
		v.endLocked(l, fmt.Errorf("lease retired and unused: %w", ErrLeaseExpired), true)
		return
	}
	v.idleLocked(l)
}

// idleLocked starts l's grace period: unless a session takes it within
// Grace, it is revoked. v.mu is held.
func (v *Vault) idleLocked(l *vaultLease) {
	if l.idle != nil {
		l.idle.Stop()
	}
	l.idleGen++
	gen := l.idleGen
	l.idle = time.AfterFunc(v.cfg.Grace, func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		if l.refs == 0 && l.idleGen == gen && !l.ended {
			v.log.Info("revoking idle credential lease", "agent", l.g.key.agent, "role", l.g.key.role, "db_user", l.user, "grace", v.cfg.Grace)
			v.endLocked(l, fmt.Errorf("no session for %s: %w", v.cfg.Grace, ErrLeaseExpired), true)
		}
	})
}

// fetch reads a new lease for g and makes it g's current one.
func (v *Vault) fetch(g *group, p *fetch) {
	defer v.wg.Done()
	defer close(p.done)
	vrole := v.cfg.vaultRole(g.key.role)
	l, err := v.read(g, vrole)

	v.mu.Lock()
	defer v.mu.Unlock()
	if g.pending == p {
		g.pending = nil
	}
	if err != nil {
		p.err = err
		if g.current == nil && len(g.all) == 0 && v.groups[g.key] == g {
			delete(v.groups, g.key)
		}
		v.log.Warn("reading database credential failed", "agent", g.key.agent, "role", g.key.role, "vault_role", vrole, "op", err.Op, "class", err.Class)
		return
	}
	if v.closed || v.groups[g.key] != g {
		// Closed or agent revoked while reading: give it back.
		p.err = fmt.Errorf("credential source closed or agent revoked: %w", ErrUnavailable)
		v.wg.Add(1)
		go func() { defer v.wg.Done(); v.revoke(l) }()
		return
	}
	if old := g.current; old != nil && old != l {
		old.retiring = true
		if old.refs == 0 && !old.ended {
			v.endLocked(old, fmt.Errorf("lease replaced: %w", ErrLeaseExpired), true)
		}
	}
	g.current = l
	g.all[l] = struct{}{}
	p.lease = l
	// Until a waiting Acquire takes it (they may all have given up, or
	// this is a successor read ahead of the max TTL), it is idle.
	v.idleLocked(l)
	v.log.Info("database credential issued", "agent", g.key.agent, "role", g.key.role, "vault_role", vrole, "db_user", l.user, "ttl", time.Until(l.expires).Round(time.Second), "renewable", l.renewable)
	v.wg.Add(1)
	go v.renewLoop(l)
}

func (v *Vault) read(g *group, vrole string) (*vaultLease, *VaultError) {
	op := "read creds for role " + vrole
	ctx, cancel := context.WithTimeout(context.Background(), v.cfg.RequestTimeout)
	defer cancel()
	if err := v.ensureToken(ctx); err != nil {
		return nil, err
	}
	sec, err := v.client.Logical().ReadWithContext(ctx, v.cfg.Mount+"/creds/"+vrole)
	if err != nil {
		ve := v.failed(op, err)
		v.authFailed(ve)
		return nil, ve
	}
	if sec == nil || sec.Data == nil {
		return nil, &VaultError{Op: op, Class: "no data (role missing?)"}
	}
	user, _ := sec.Data["username"].(string)
	pw, _ := sec.Data["password"].(string)
	if user == "" || pw == "" || sec.LeaseID == "" {
		return nil, &VaultError{Op: op, Class: "response without username, password or lease"}
	}
	d := time.Duration(sec.LeaseDuration) * time.Second
	return &vaultLease{
		g:         g,
		id:        sec.LeaseID,
		user:      user,
		password:  NewSecret(pw),
		increment: d,
		expires:   time.Now().Add(d),
		renewable: sec.Renewable,
		done:      make(chan struct{}),
		stop:      make(chan struct{}),
	}, nil
}

// renewLoop keeps l alive until it ends.
func (v *Vault) renewLoop(l *vaultLease) {
	defer v.wg.Done()
	log := v.log.With("agent", l.g.key.agent, "role", l.g.key.role, "db_user", l.user)
	t := time.NewTimer(0)
	defer t.Stop()
	failures := 0
	for {
		v.mu.Lock()
		expires, capped, renewable := l.expires, l.capped, l.renewable
		v.mu.Unlock()
		now := time.Now()
		var wait time.Duration
		switch {
		case capped || !renewable:
			wait = expires.Sub(now)
		case failures > 0:
			// Retry soon, but not in a hot loop, until it runs out.
			wait = min(time.Duration(failures)*500*time.Millisecond, 5*time.Second, max(expires.Sub(now), 0))
		default:
			wait = expires.Sub(now) - v.cfg.renewBefore(l.increment)
		}
		t.Reset(max(wait, 0))
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		if !time.Now().Before(expires) {
			cause := fmt.Errorf("lease reached its max TTL: %w", ErrLeaseExpired)
			if failures > 0 {
				cause = fmt.Errorf("lease could not be renewed before it expired: %w", ErrLeaseExpired)
			}
			log.Warn("credential lease ended", "reason", "expired", "renew_failures", failures)
			v.end(l, cause, false)
			return
		}
		if capped || !renewable {
			continue
		}
		ttl, err := v.renew(l)
		if err != nil {
			failures++
			if err.Status == 400 || err.Status == 404 {
				// Vault answers 400 "lease not found" / "invalid lease ID"
				// for a lease it has revoked.
				log.Warn("credential lease ended", "reason", "revoked", "class", err.Class)
				v.end(l, fmt.Errorf("vault rejected renewal (%s): %w", err.Class, ErrLeaseRevoked), false)
				return
			}
			log.Warn("renewing credential lease failed; will retry", "class", err.Class, "failures", failures, "expires_in", time.Until(expires).Round(time.Second))
			continue
		}
		failures = 0
		v.mu.Lock()
		l.expires = time.Now().Add(ttl)
		if ttl < l.increment {
			// Cut short by max_ttl: it cannot be extended. Give new
			// sessions a fresh lease now; old sessions keep this one.
			l.capped = true
			v.retireLocked(l)
		}
		v.mu.Unlock()
	}
}

// retireLocked stops giving l to new sessions and, if sessions use it,
// starts reading its successor. v.mu is held.
func (v *Vault) retireLocked(l *vaultLease) {
	if l.retiring || l.ended {
		return
	}
	l.retiring = true
	g := l.g
	if g.current != l || v.closed || v.groups[g.key] != g {
		return
	}
	if l.refs == 0 {
		v.endLocked(l, fmt.Errorf("lease near max TTL and unused: %w", ErrLeaseExpired), true)
		return
	}
	if g.pending == nil {
		p := &fetch{done: make(chan struct{})}
		g.pending = p
		v.wg.Add(1)
		go v.fetch(g, p)
	}
}

func (v *Vault) renew(l *vaultLease) (time.Duration, *VaultError) {
	ctx, cancel := context.WithTimeout(context.Background(), v.cfg.RequestTimeout)
	defer cancel()
	if err := v.ensureToken(ctx); err != nil {
		return 0, err
	}
	sec, err := v.client.Sys().RenewWithContext(ctx, l.id, int(l.increment/time.Second))
	if err != nil {
		ve := v.failed("renew lease", err)
		v.authFailed(ve)
		return 0, ve
	}
	if sec == nil {
		return 0, &VaultError{Op: "renew lease", Class: "no data"}
	}
	return time.Duration(sec.LeaseDuration) * time.Second, nil
}

// revoke revokes l in Vault, best effort: if Vault is down the lease runs
// out by its TTL, since nobody renews it any more.
func (v *Vault) revoke(l *vaultLease) {
	ctx, cancel := context.WithTimeout(context.Background(), v.cfg.RequestTimeout)
	defer cancel()
	if err := v.ensureToken(ctx); err != nil {
		v.log.Warn("revoking credential lease failed; it will expire by its TTL", "db_user", l.user, "class", err.Class)
		return
	}
	if err := v.client.Sys().RevokeWithContext(ctx, l.id); err != nil {
		ve := v.failed("revoke lease", err)
		v.authFailed(ve)
		v.log.Warn("revoking credential lease failed; it will expire by its TTL", "db_user", l.user, "class", ve.Class)
		return
	}
	v.log.Info("credential lease revoked", "db_user", l.user)
}

func (v *Vault) end(l *vaultLease, cause error, revoke bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.endLocked(l, cause, revoke)
}

// endLocked ends l: closes Done for its sessions, forgets it and, if
// revoke, revokes it in Vault in the background. v.mu is held.
func (v *Vault) endLocked(l *vaultLease, cause error, revoke bool) {
	if l.ended {
		return
	}
	l.ended = true
	l.cause = cause
	close(l.done)
	close(l.stop)
	if l.idle != nil {
		l.idle.Stop()
		l.idle = nil
	}
	g := l.g
	delete(g.all, l)
	if g.current == l {
		g.current = nil
	}
	if g.current == nil && len(g.all) == 0 && g.pending == nil && v.groups[g.key] == g {
		delete(v.groups, g.key)
	}
	if revoke {
		v.wg.Add(1)
		go func() { defer v.wg.Done(); v.revoke(l) }()
	}
}

// RevokeAgent ends and revokes every lease of agent (e.g. removed from the
// policy): its sessions' Done close with ErrAgentRevoked.
func (v *Vault) RevokeAgent(agent string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for k, g := range v.groups {
		if k.agent != agent {
			continue
		}
		delete(v.groups, k)
		for l := range g.all {
			v.endLocked(l, fmt.Errorf("agent %q: %w", agent, ErrAgentRevoked), true)
		}
	}
}

// Close ends and revokes every lease and waits for the revocations.
func (v *Vault) Close() error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		v.wg.Wait()
		return nil
	}
	v.closed = true
	close(v.quit)
	for k, g := range v.groups {
		delete(v.groups, k)
		for l := range g.all {
			v.endLocked(l, fmt.Errorf("shutting down: %w", ErrClosed), true)
		}
	}
	v.mu.Unlock()
	v.wg.Wait()
	return nil
}

// Healthy reports whether Vault answers and accepts keyhole's token. The
// error names a generic class only and wraps ErrUnavailable.
func (v *Vault) Healthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), v.cfg.RequestTimeout)
	defer cancel()
	if err := v.ensureToken(ctx); err != nil {
		return err
	}
	if _, err := v.client.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		ve := v.failed("token lookup", err)
		v.authFailed(ve)
		return ve
	}
	return nil
}

// ensureToken keeps keyhole's Vault token alive: Vault revokes a token's
// leases when the token expires. With method token it looks the token up
// once and, if it is renewable, renews it at two thirds of its TTL; it
// never replaces it. With approle and kubernetes it logs in when there is
// no token, and renews (or, failing that, logs in again) when it is due.
func (v *Vault) ensureToken(ctx context.Context) *VaultError {
	v.authMu.Lock()
	defer v.authMu.Unlock()
	if v.cfg.Auth.Method == "token" {
		return v.ensureStaticToken(ctx)
	}
	if v.tokenOK && time.Now().Before(v.tokenRenewAt) {
		return nil
	}
	if v.tokenOK {
		// Renewing keeps the token, and with it the leases it created:
		// Vault revokes a token's leases when the token goes.
		sec, err := v.client.Auth().Token().RenewSelfWithContext(ctx, 0)
		if err == nil && sec != nil && sec.Auth != nil && sec.Auth.LeaseDuration > 0 {
			v.tokenRenewAt = time.Now().Add(time.Duration(sec.Auth.LeaseDuration) * time.Second * 2 / 3)
			return nil
		}
		if err != nil {
			ve := v.failed("renew token", err)
			if ve.Status == 0 || ve.Status >= 500 {
				return ve // Vault down: keep the token for later.
			}
		}
		v.log.Warn("vault token could not be renewed; logging in again (leases it created end with it)")
	}
	var path string
	var data map[string]any
	switch v.cfg.Auth.Method {
	case "approle":
		a := v.cfg.Auth.AppRole
		sid, err := os.ReadFile(a.SecretIDFile)
		if err != nil {
			return &VaultError{Op: "approle login", Class: "cannot read secret_id_file"}
		}
		path = "auth/" + a.Mount + "/login"
		data = map[string]any{"role_id": a.RoleID, "secret_id": strings.TrimSpace(string(sid))}
	case "kubernetes":
		k := v.cfg.Auth.Kubernetes
		jwt, err := os.ReadFile(k.TokenFile)
		if err != nil {
			return &VaultError{Op: "kubernetes login", Class: "cannot read token_file"}
		}
		path = "auth/" + k.Mount + "/login"
		data = map[string]any{"role": k.Role, "jwt": strings.TrimSpace(string(jwt))}
	}
	op := v.cfg.Auth.Method + " login"
	v.client.SetToken("")
	sec, err := v.client.Logical().WriteWithContext(ctx, path, data)
	if err != nil {
		v.tokenOK = false
		return v.failed(op, err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		v.tokenOK = false
		return &VaultError{Op: op, Class: "no token in response"}
	}
	v.client.SetToken(sec.Auth.ClientToken)
	v.tokenOK = true
	ttl := time.Duration(sec.Auth.LeaseDuration) * time.Second
	if ttl <= 0 {
		ttl = 365 * 24 * time.Hour
	}
	v.tokenRenewAt = time.Now().Add(ttl * 2 / 3)
	v.log.Info("logged in to vault", "method", v.cfg.Auth.Method, "token_ttl", ttl)
	return nil
}

// ensureStaticToken is ensureToken for method token. v.authMu is held.
func (v *Vault) ensureStaticToken(ctx context.Context) *VaultError {
	now := time.Now()
	if v.tokenChecked && (v.tokenRenewAt.IsZero() || now.Before(v.tokenRenewAt)) {
		return nil
	}
	if !v.tokenChecked {
		sec, err := v.client.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return v.failed("token lookup", err)
		}
		v.tokenChecked = true
		renewable, _ := sec.TokenIsRenewable()
		ttl, _ := sec.TokenTTL()
		if renewable && ttl > 0 {
			v.tokenRenewAt = now.Add(ttl * 2 / 3)
		}
		return nil
	}
	sec, err := v.client.Auth().Token().RenewSelfWithContext(ctx, 0)
	if err != nil || sec == nil || sec.Auth == nil {
		// Not fatal for this request: the token may still be valid for a
		// while. Try again soon.
		class := "no data"
		if err != nil {
			class = v.failed("renew token", err).Class
		}
		v.log.Warn("renewing vault token failed; will retry", "class", class)
		v.tokenRenewAt = now.Add(5 * time.Second)
		return nil
	}
	ttl := time.Duration(sec.Auth.LeaseDuration) * time.Second
	if !sec.Auth.Renewable || ttl <= 0 {
		v.tokenRenewAt = time.Time{}
		return nil
	}
	v.tokenRenewAt = now.Add(ttl * 2 / 3)
	return nil
}

// authFailed forgets a login token Vault refused, so the next request logs
// in again.
func (v *Vault) authFailed(ve *VaultError) {
	if ve.Status != 403 || v.cfg.Auth.Method == "token" {
		return
	}
	v.authMu.Lock()
	v.tokenOK = false
	v.tokenRenewAt = time.Time{}
	v.authMu.Unlock()
}
