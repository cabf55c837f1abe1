package identity

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrConfig is returned (wrapped) for an invalid identity configuration.
var ErrConfig = errors.New("invalid identity config")

// Config says which credentials identify agents. All parts are optional;
// an agent can only use the methods configured here.
//
//	tokens:
//	  public_key_file: /etc/keyhole/token.pub   # from `keyhole token keygen`
//	  issuer: keyhole                           # default
//	  audience: ""                              # optional "aud" to require
//	  leeway: 30s                               # clock skew on exp/nbf/iat
//	  revoked_file: /etc/keyhole/revoked        # jti per line, reloaded on change
//	jwks:                                       # external issuers
//	  - url: https://idp.example.com/.well-known/jwks.json
//	    issuer: https://idp.example.com/
//	    audience: keyhole
//	scram:
//	  verifiers: {sales-summarizer: "SCRAM-SHA-256$4096:...$...:..."}
//	  verifiers_file: /etc/keyhole/agents-scram.yaml   # same map, in a file (reloaded on change: ReloadSecrets)
//	spiffe:
//	  spiffe://example.org/agents/sales: sales-summarizer
//	lockout:                                    # failed SCRAM secrets, per (address, agent)
//	  max_failures: 5                           # free failures before the first lockout
//	  base_delay: 1s                            # first lockout, doubled per further failure
//	  max_delay: 15m                            # longest lockout
//	  max_entries: 65536                        # (address, agent) pairs remembered
//	mysql:                                      # MySQL protocol secrets
//	  verifiers: {sales-summarizer: "MYSQL$*...$..."}
//	  verifiers_file: /etc/keyhole/agents-mysql.yaml
type Config struct {
	Tokens TokenConfig       `yaml:"tokens,omitempty" json:"tokens,omitempty"`
	JWKS   []JWKSConfig      `yaml:"jwks,omitempty" json:"jwks,omitempty"`
	SCRAM  SCRAMConfig       `yaml:"scram,omitempty" json:"scram,omitempty"`
	SPIFFE map[string]string `yaml:"spiffe,omitempty" json:"spiffe,omitempty"`
	// Lockout configures the Limiter the front ends share (NewLimiter);
	// New only checks it.
	Lockout LockoutConfig `yaml:"lockout,omitempty" json:"lockout,omitempty"`
	// MySQL holds per-agent MySQL verifiers (identity/mysql.go).
	MySQL MySQLConfig `yaml:"mysql,omitempty" json:"mysql,omitempty"`
}

// TokenConfig verifies tokens minted by `keyhole token mint`.
type TokenConfig struct {
	PublicKeyFile string        `yaml:"public_key_file,omitempty" json:"public_key_file,omitempty"`
	Issuer        string        `yaml:"issuer,omitempty" json:"issuer,omitempty"`
	Audience      string        `yaml:"audience,omitempty" json:"audience,omitempty"`
	Leeway        time.Duration `yaml:"leeway,omitempty" json:"leeway,omitempty"`
	RevokedFile   string        `yaml:"revoked_file,omitempty" json:"revoked_file,omitempty"`
}

// SCRAMConfig holds per-agent SCRAM-SHA-256 verifiers (agent → verifier in
// Postgres format), inline and/or from a YAML file with the same map. An
// agent listed in both is an error.
type SCRAMConfig struct {
	Verifiers     map[string]string `yaml:"verifiers,omitempty" json:"verifiers,omitempty"`
	VerifiersFile string            `yaml:"verifiers_file,omitempty" json:"verifiers_file,omitempty"`
}

// ParseConfig decodes a YAML identity config strictly: unknown keys are
// errors.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	if err := decodeStrict(data, &c); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return c, nil
}

// LoadConfig reads and parses a YAML identity config file.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read identity config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Auth implements Authenticator from a Config. It is safe for concurrent
// use.
type Auth struct {
	tokens *tokenVerifier // nil: no token method
	spiffe map[string]string
	// secrets are the agents' stored SCRAM and MySQL verifiers, swapped
	// whole by ReloadSecrets (secrets.go).
	secrets   atomic.Pointer[agentSecrets]
	secretCfg secretsConfig
	reloadMu  sync.Mutex // serializes ReloadSecrets
}

var _ Authenticator = (*Auth)(nil)

// RevokedTokens returns the token ids (jti) of tokens.revoked_file in
// force, reading the file again if it may have changed; nil without the
// file. The map is not to be written. The gateway ends the open sessions
// of a token revoked after they logged in with it.
func (a *Auth) RevokedTokens() map[string]bool {
	if a.tokens == nil || a.tokens.revoked == nil {
		return nil
	}
	return a.tokens.revoked.snapshot()
}

// New builds an Auth, reading every file the config names.
func New(cfg Config) (*Auth, error) {
	return newAuthenticator(cfg, time.Now)
}

func newAuthenticator(cfg Config, now func() time.Time) (*Auth, error) {
	if err := cfg.Lockout.validate(); err != nil {
		return nil, fmt.Errorf("%w: lockout: %w", ErrConfig, err)
	}
	a := &Auth{spiffe: map[string]string{}, secretCfg: secretsConfig{scram: cfg.SCRAM, mysql: cfg.MySQL}}

	tv := &tokenVerifier{
		localIssuer:   cfg.Tokens.Issuer,
		localAudience: cfg.Tokens.Audience,
		leeway:        cfg.Tokens.Leeway,
		now:           now,
	}
	if tv.localIssuer == "" {
		tv.localIssuer = DefaultIssuer
	}
	if tv.leeway == 0 {
		tv.leeway = DefaultLeeway
	}
	if tv.leeway < 0 {
		return nil, fmt.Errorf("%w: negative token leeway", ErrConfig)
	}
	if cfg.Tokens.PublicKeyFile != "" {
		pub, err := ReadPublicKeyFile(cfg.Tokens.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: tokens.public_key_file: %w", ErrConfig, err)
		}
		tv.localKey = pub
	}
	issuers := map[string]bool{}
	if tv.localKey != nil {
		issuers[tv.localIssuer] = true
	}
	for i, jc := range cfg.JWKS {
		if issuers[jc.Issuer] {
			return nil, fmt.Errorf("%w: jwks[%d]: issuer %q configured twice", ErrConfig, i, jc.Issuer)
		}
		issuers[jc.Issuer] = true
		src, err := newJWKSSource(jc, now)
		if err != nil {
			return nil, fmt.Errorf("%w: jwks[%d]: %w", ErrConfig, i, err)
		}
		tv.jwks = append(tv.jwks, src)
	}
	if cfg.Tokens.RevokedFile != "" {
		rl, err := newRevocationList(cfg.Tokens.RevokedFile, now)
		if err != nil {
			return nil, fmt.Errorf("%w: tokens.revoked_file: %w", ErrConfig, err)
		}
		tv.revoked = rl
	}
	if tv.localKey != nil || len(tv.jwks) > 0 {
		a.tokens = tv
	}

	secrets, err := a.secretCfg.load()
	if err != nil {
		return nil, err
	}
	a.secrets.Store(secrets)

	for id, agent := range cfg.SPIFFE {
		if _, err := ParseSPIFFEID(id); err != nil {
			return nil, fmt.Errorf("%w: spiffe: %w", ErrConfig, err)
		}
		if agent == "" {
			return nil, fmt.Errorf("%w: spiffe: %s maps to an empty agent name", ErrConfig, id)
		}
		a.spiffe[id] = agent
	}
	return a, nil
}

// mockKey is the key of made-up verifiers' salts. Derived from the stored
// keys (secret, and stable while the configuration is), the salt an unknown
// name gets stays the same across restarts, as a real agent's does; with no
// verifier configured there is nothing to tell apart and it is random.
func mockKey(verifiers map[string]Verifier) []byte {
	if len(verifiers) == 0 {
		k := make([]byte, sha256.Size)
		_, _ = rand.Read(k)
		return k
	}
	h := hmac.New(sha256.New, []byte("keyhole scram mock salt"))
	for _, agent := range slices.Sorted(maps.Keys(verifiers)) {
		h.Write(verifiers[agent].StoredKey)
	}
	return h.Sum(nil)
}

// Token verifies a signed agent token sent as the password of user.
func (a *Auth) Token(user, token string) (*Agent, error) {
	if a.tokens == nil {
		return nil, authErrf(ReasonCredentials, "token authentication is not configured")
	}
	return a.tokens.verify(user, token)
}

// SCRAM starts a SCRAM-SHA-256 server conversation for user. A user
// without a verifier gets ok=false (ask for a token) when tokens are
// configured; without a token method a cleartext request would tell the
// client that the name has no secret, so it gets a conversation over a
// made-up verifier that fails exactly like a wrong secret.
func (a *Auth) SCRAM(user string) (SCRAMConversation, bool) {
	secrets := a.secrets.Load()
	v, ok := secrets.verifiers[user]
	if ok {
		return newSCRAMServer(user, v, ""), true
	}
	if a.tokens != nil {
		return nil, false
	}
	s := newSCRAMServer(user, mockVerifier(secrets.mockKey, user), "")
	s.mock = true
	return s, true
}

// Certificate maps a verified client certificate's SPIFFE ID to an agent.
func (a *Auth) Certificate(user string, cert *x509.Certificate) (*Agent, error) {
	return certificate(a.spiffe, user, cert)
}
