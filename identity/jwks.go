package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"
)

// Defaults for a JWKS fetched from a URL.
const (
	DefaultJWKSRefresh = 5 * time.Minute
	DefaultJWKSTimeout = 5 * time.Second
	// jwksMinRefetch limits refetches triggered by an unknown kid, so a
	// stream of tokens with made-up kids cannot hammer the issuer.
	jwksMinRefetch = 30 * time.Second
	maxJWKSBytes   = 1 << 20
	minRSABits     = 2048
)

// ErrJWKS is returned (wrapped) for an unusable key set.
var ErrJWKS = errors.New("invalid JWKS")

// JWKSConfig trusts an external token issuer through its JSON Web Key Set
// (RFC 7517). Exactly one of File and URL is set.
type JWKSConfig struct {
	File string `yaml:"file,omitempty" json:"file,omitempty"`
	URL  string `yaml:"url,omitempty" json:"url,omitempty"`
	// Issuer is the "iss" the issuer's tokens carry; required.
	Issuer string `yaml:"issuer" json:"issuer"`
	// Audience, when set, must be in the token's "aud".
	Audience string `yaml:"audience,omitempty" json:"audience,omitempty"`
	// Refresh is how often a URL is refetched (default 5m); Timeout bounds
	// one fetch (default 5s).
	Refresh time.Duration `yaml:"refresh,omitempty" json:"refresh,omitempty"`
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
	D   string `json:"d"`
}

// verifyKey is one usable public key from a JWKS.
type verifyKey struct {
	kid string
	alg string // from the JWK, may be empty
	key any    // ed25519.PublicKey, *rsa.PublicKey, *ecdsa.PublicKey
}

// algFits reports whether a JWS alg can be used with the key's type.
func (k verifyKey) algFits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch pk := k.key.(type) {
	case ed25519.PublicKey:
		return alg == "EdDSA"
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return true
		}
	case *ecdsa.PublicKey:
		switch pk.Curve {
		case elliptic.P256():
			return alg == "ES256"
		case elliptic.P384():
			return alg == "ES384"
		case elliptic.P521():
			return alg == "ES512"
		}
	}
	return false
}

// parseJWKS parses a JWKS document, keeping signature keys of type OKP
// (Ed25519), RSA (≥ 2048 bits) and EC (P-256/384/521). Keys of other types
// or with "use" other than "sig" are skipped; a document with a private key
// or with no usable key is an error.
func parseJWKS(data []byte) ([]verifyKey, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrJWKS, err)
	}
	var keys []verifyKey
	for i, k := range doc.Keys {
		if k.D != "" {
			return nil, fmt.Errorf("%w: key %d (kid %q) contains private material", ErrJWKS, i, k.Kid)
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pk, err := k.publicKey()
		if err != nil {
			return nil, fmt.Errorf("%w: key %d (kid %q): %w", ErrJWKS, i, k.Kid, err)
		}
		if pk == nil {
			continue
		}
		keys = append(keys, verifyKey{kid: k.Kid, alg: k.Alg, key: pk})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no usable signature key", ErrJWKS)
	}
	return keys, nil
}

func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(s)
}

// publicKey returns nil, nil for a key type keyhole does not use.
func (k jwk) publicKey() (any, error) {
	switch k.Kty {
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, nil
		}
		x, err := b64(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 x")
		}
		return ed25519.PublicKey(x), nil
	case "RSA":
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA n or e")
		}
		pk := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pk.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits, want at least %d", pk.N.BitLen(), minRSABits)
		}
		if pk.E < 3 || pk.E%2 == 0 {
			return nil, errors.New("bad RSA exponent")
		}
		return pk, nil
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, nil
		}
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		size := (curve.Params().BitSize + 7) / 8
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, errors.New("bad EC x or y")
		}
		// Uncompressed SEC 1 point; ecdh/ecdsa parsing checks it is on the curve.
		point := append([]byte{4}, append(x, y...)...)
		pk, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, fmt.Errorf("bad EC point: %w", err)
		}
		return pk, nil
	}
	return nil, nil
}

// jwksSource holds one issuer's keys, from a file (read once) or a URL
// (fetched with a timeout, cached, refreshed periodically and on an unknown
// kid). A failed refresh keeps the last good keys.
type jwksSource struct {
	issuer   string
	audience string
	url      string
	logURL   string // url without user info, for logs
	refresh  time.Duration
	client   *http.Client
	now      func() time.Time

	mu        sync.Mutex
	keys      []verifyKey
	fetched   time.Time // last successful fetch
	attempted time.Time // last attempt
}

func newJWKSSource(c JWKSConfig, now func() time.Time) (*jwksSource, error) {
	if c.Issuer == "" {
		return nil, fmt.Errorf("%w: jwks issuer is required", ErrJWKS)
	}
	if (c.File == "") == (c.URL == "") {
		return nil, fmt.Errorf("%w: jwks for %q needs exactly one of file and url", ErrJWKS, c.Issuer)
	}
	s := &jwksSource{issuer: c.Issuer, audience: c.Audience, now: now}
	if c.File != "" {
		data, err := os.ReadFile(c.File)
		if err != nil {
			return nil, fmt.Errorf("read jwks: %w", err)
		}
		keys, err := parseJWKS(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.File, err)
		}
		s.keys = keys
		return s, nil
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%w: jwks url for %q must be an http(s) URL", ErrJWKS, c.Issuer)
	}
	// Logs name the URL without user info or query: either can hold the
	// issuer's credential (u.Redacted keeps a query's access_token).
	logURL := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	if u.Scheme == "http" {
		// Keys fetched in the clear can be replaced by anyone on the path.
		slog.Warn("jwks url is not https: its keys can be tampered with in transit", "issuer", c.Issuer, "url", logURL)
	}
	s.url, s.logURL = c.URL, logURL
	s.refresh = c.Refresh
	if s.refresh <= 0 {
		s.refresh = DefaultJWKSRefresh
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultJWKSTimeout
	}
	s.client = &http.Client{Timeout: timeout}
	// A first fetch now; if the issuer is down, keyhole still starts and
	// tokens from this issuer fail until a fetch succeeds.
	s.mu.Lock()
	if err := s.fetchLocked(); err != nil {
		slog.Warn("jwks fetch failed; will retry", "issuer", s.issuer, "url", s.logURL, "err", err)
	}
	s.mu.Unlock()
	return s, nil
}

func (s *jwksSource) fetchLocked() error {
	s.attempted = s.now()
	resp, err := s.client.Get(s.url)
	if err != nil {
		// *url.Error quotes the URL; name the issuer instead.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("fetch jwks for %q: %w", s.issuer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch jwks: %w: HTTP %d", ErrJWKS, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("fetch jwks: %w", err)
	}
	if len(data) > maxJWKSBytes {
		return fmt.Errorf("fetch jwks: %w: larger than %d bytes", ErrJWKS, maxJWKSBytes)
	}
	keys, err := parseJWKS(data)
	if err != nil {
		return err
	}
	s.keys, s.fetched = keys, s.now()
	return nil
}

// key finds the verification key for a token's kid and alg.
func (s *jwksSource) key(kid, alg string) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.url != "" {
		now := s.now()
		stale := now.Sub(s.fetched) >= s.refresh
		if stale && now.Sub(s.attempted) >= jwksMinRefetch || s.keys == nil && now.Sub(s.attempted) >= time.Second {
			if err := s.fetchLocked(); err != nil {
				slog.Warn("jwks refresh failed; keeping cached keys", "issuer", s.issuer, "url", s.logURL, "err", err)
			}
		}
	}
	k, ok := s.find(kid, alg)
	if !ok && s.url != "" && s.now().Sub(s.attempted) >= jwksMinRefetch {
		// The issuer may have rotated keys since the last fetch.
		if err := s.fetchLocked(); err != nil {
			slog.Warn("jwks refresh failed; keeping cached keys", "issuer", s.issuer, "url", s.logURL, "err", err)
		}
		k, ok = s.find(kid, alg)
	}
	if !ok {
		return nil, fmt.Errorf("no key for kid %q alg %q from issuer %q", kid, alg, s.issuer)
	}
	return k, nil
}

func (s *jwksSource) find(kid, alg string) (any, bool) {
	if kid == "" {
		// Without a kid the key set must be unambiguous.
		var found []any
		for _, k := range s.keys {
			if k.algFits(alg) {
				found = append(found, k.key)
			}
		}
		if len(found) == 1 {
			return found[0], true
		}
		return nil, false
	}
	for _, k := range s.keys {
		if k.kid == kid && k.algFits(alg) {
			return k.key, true
		}
	}
	return nil, false
}
