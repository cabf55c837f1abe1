package creds

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"
)

// Defaults for VaultConfig fields left zero.
const (
	DefaultVaultMount        = "database"
	DefaultGrace             = 5 * time.Minute
	DefaultRequestTimeout    = 10 * time.Second
	DefaultAppRoleMount      = "approle"
	DefaultKubernetesMount   = "kubernetes"
	DefaultKubernetesJWTFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
)

// VaultConfig configures the Vault source. It is meant to be one section
// of keyhole.yaml, decoded strictly (unknown keys are errors). The Vault
// token is never read from the file: it comes from the VAULT_TOKEN
// environment variable (or Auth.Token, set by code), or from an AppRole or
// Kubernetes login.
type VaultConfig struct {
	// Addr is Vault's URL, e.g. https://vault.internal:8200.
	Addr string `yaml:"addr"`
	// Mount is the path of the database secrets engine (default "database").
	Mount string `yaml:"mount"`
	// CACert is a PEM file of CAs to verify Vault's TLS certificate.
	CACert string `yaml:"ca_cert"`
	// Auth says how keyhole logs in to Vault.
	Auth VaultAuth `yaml:"auth"`
	// RoleMap maps keyhole roles to Vault database roles; a role not in it
	// uses the Vault role of the same name.
	RoleMap map[string]string `yaml:"roles"`
	// RenewBefore is how long before a lease expires it is renewed
	// (default: a third of the lease's duration).
	RenewBefore time.Duration `yaml:"renew_before"`
	// Grace is how long a lease is kept after its agent's last session
	// ended, for the agent's next session; then it is revoked (default 5m).
	Grace time.Duration `yaml:"grace"`
	// RequestTimeout bounds each Vault request (default 10s).
	RequestTimeout time.Duration `yaml:"request_timeout"`
}

// VaultAuth selects one Vault auth method. Method is "token" (default),
// "approle" or "kubernetes"; when empty it is inferred from which of
// AppRole and Kubernetes is set.
type VaultAuth struct {
	Method     string          `yaml:"method"`
	AppRole    *AppRoleAuth    `yaml:"approle"`
	Kubernetes *KubernetesAuth `yaml:"kubernetes"`
	// Token is the Vault token for method "token". Never read from a file;
	// empty means the VAULT_TOKEN environment variable.
	Token Secret `yaml:"-"`
}

// AppRoleAuth logs in with an AppRole role_id and a secret_id read from a
// file (re-read at every login, so it can be rotated).
type AppRoleAuth struct {
	Mount        string `yaml:"mount"` // default "approle"
	RoleID       string `yaml:"role_id"`
	SecretIDFile string `yaml:"secret_id_file"`
}

// KubernetesAuth logs in with the pod's service account token.
type KubernetesAuth struct {
	Mount     string `yaml:"mount"` // default "kubernetes"
	Role      string `yaml:"role"`
	TokenFile string `yaml:"token_file"` // default DefaultKubernetesJWTFile
}

// ErrConfig is wrapped by configuration errors from NewVault.
var ErrConfig = errors.New("invalid vault configuration")

// ConfigError is one problem of a VaultConfig as written: Key is its key
// under the vault section ("auth.approle"), for a caller that points at a
// file's line. It wraps ErrConfig.
type ConfigError struct{ Key, Msg string }

func (e *ConfigError) Error() string { return "vault " + e.Key + ": " + e.Msg }
func (e *ConfigError) Unwrap() error { return ErrConfig }

// Validate checks cfg as written, before defaults: every problem, each a
// *ConfigError, joined. It is the one check of the section: keyhole.yaml's
// creds.vault (config.Validate) and NewVault both use it. That a token is
// at hand (VAULT_TOKEN) is checked only when NewVault starts.
func (cfg VaultConfig) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if cfg.Addr == "" {
		bad("addr", "required")
	} else if u, err := url.Parse(cfg.Addr); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("addr", "%q: want an http(s) URL", DisplayAddr(cfg.Addr))
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{"grace", cfg.Grace}, {"renew_before", cfg.RenewBefore}, {"request_timeout", cfg.RequestTimeout}} {
		if d.d < 0 {
			bad(d.key, "negative")
		}
	}
	a := cfg.Auth
	switch a.Method {
	case "", "token", "approle", "kubernetes":
	default:
		bad("auth.method", "%q: want token, approle or kubernetes", a.Method)
	}
	if a.AppRole != nil && a.Kubernetes != nil {
		bad("auth", "set only one of approle and kubernetes")
	}
	if (a.Method == "approle") != (a.AppRole != nil) && a.Method != "" {
		bad("auth.approle", "method approle needs the approle section (and only it)")
	}
	if (a.Method == "kubernetes") != (a.Kubernetes != nil) && a.Method != "" {
		bad("auth.kubernetes", "method kubernetes needs the kubernetes section (and only it)")
	}
	if a.AppRole != nil && (a.AppRole.RoleID == "" || a.AppRole.SecretIDFile == "") {
		bad("auth.approle", "role_id and secret_id_file are required")
	}
	if a.Kubernetes != nil && a.Kubernetes.Role == "" {
		bad("auth.kubernetes.role", "required")
	}
	return errors.Join(errs...)
}

// withDefaults checks cfg (Validate) and returns it with zero fields set
// to their defaults and the token taken from VAULT_TOKEN.
func (cfg VaultConfig) withDefaults() (VaultConfig, error) {
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	if cfg.Mount == "" {
		cfg.Mount = DefaultVaultMount
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	a := &cfg.Auth
	if a.Method == "" {
		switch {
		case a.AppRole != nil:
			a.Method = "approle"
		case a.Kubernetes != nil:
			a.Method = "kubernetes"
		default:
			a.Method = "token"
		}
	}
	switch a.Method {
	case "token":
		if a.Token.Empty() {
			a.Token = NewSecret(os.Getenv("VAULT_TOKEN"))
		}
		if a.Token.Empty() {
			return cfg, fmt.Errorf("vault auth token: VAULT_TOKEN is not set: %w", ErrConfig)
		}
	case "approle":
		if a.AppRole.Mount == "" {
			a.AppRole.Mount = DefaultAppRoleMount
		}
	case "kubernetes":
		if a.Kubernetes.Mount == "" {
			a.Kubernetes.Mount = DefaultKubernetesMount
		}
		if a.Kubernetes.TokenFile == "" {
			a.Kubernetes.TokenFile = DefaultKubernetesJWTFile
		}
	}
	return cfg, nil
}

// renewBefore is how long before expiry a lease of duration d is renewed.
func (cfg VaultConfig) renewBefore(d time.Duration) time.Duration {
	if cfg.RenewBefore > 0 && cfg.RenewBefore < d {
		return cfg.RenewBefore
	}
	return d / 3
}

// vaultRole is the Vault role for a keyhole role.
func (cfg VaultConfig) vaultRole(role string) string {
	if r, ok := cfg.RoleMap[role]; ok && r != "" {
		return r
	}
	return role
}

// DisplayAddr is a Vault address as keyhole prints it: scheme, host and
// path only. A login in the URL's user info is one Go's HTTP client sends
// (basic auth, e.g. to a proxy in front of Vault), and a query can carry
// a token; neither is printed. An address that does not parse prints as
// "(unparsable)", since where the secret sits in it is unknown.
func DisplayAddr(addr string) string {
	u, err := url.Parse(addr)
	if err != nil {
		return "(unparsable)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}
