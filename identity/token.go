package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// DefaultIssuer is the "iss" of tokens minted by keyhole.
const DefaultIssuer = "keyhole"

// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
const DefaultLeeway = 30 * time.Second

// maxTokenLen bounds what is parsed at all: an agent token is a few hundred
// bytes; a Postgres password message may be up to the message length limit.
const maxTokenLen = 16 << 10

// Claims is what Mint puts in an agent token.
type Claims struct {
	Agent string        // "sub": the agent name, which must equal the connecting user
	TTL   time.Duration // "exp" = now + TTL; must be positive
	// Scope narrows the agent's role ("scope" claim); nil means no narrowing.
	Scope []sqlpolicy.Grant
	// ID is the token id ("jti"); a random one is made when empty.
	ID string
	// Issuer is "iss"; DefaultIssuer when empty.
	Issuer string
	// Audience is "aud"; omitted when empty.
	Audience string
	// Purpose is the task the token is for ("purpose" claim): reviewers
	// see it with the access requests the agent opens. It never widens
	// or narrows what the agent may do.
	Purpose string
}

// MaxPurposeLen bounds the purpose claim.
const MaxPurposeLen = 200

// tokenClaims is the JWT payload: registered claims plus keyhole's "scope"
// claim, a JSON list of {"verb": ..., "tables": [...]}.
type tokenClaims struct {
	jwt.RegisteredClaims
	Scope   []sqlpolicy.Grant `json:"scope,omitempty"`
	Purpose string            `json:"purpose,omitempty"`
}

// Mint signs an agent token with key (alg EdDSA, RFC 8037).
func Mint(key ed25519.PrivateKey, c Claims) (string, error) {
	if len(key) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("mint: %w", ErrKeyFile)
	}
	if c.Agent == "" {
		return "", errors.New("mint: agent name is empty")
	}
	if c.TTL <= 0 {
		return "", fmt.Errorf("mint: ttl %s must be positive", c.TTL)
	}
	for _, g := range c.Scope {
		if err := validateGrant(g); err != nil {
			return "", fmt.Errorf("mint: %w", err)
		}
	}
	if err := validatePurpose(c.Purpose); err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	if c.ID == "" {
		c.ID = newTokenID()
	}
	if c.Issuer == "" {
		c.Issuer = DefaultIssuer
	}
	now := time.Now().Truncate(time.Second)
	tc := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    c.Issuer,
			Subject:   c.Agent,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(c.TTL)),
			ID:        c.ID,
		},
		Scope:   c.Scope,
		Purpose: c.Purpose,
	}
	if c.Audience != "" {
		tc.Audience = jwt.ClaimStrings{c.Audience}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, tc).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("mint: sign: %w", err)
	}
	return s, nil
}

func newTokenID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// knownVerbs are the verbs a grant may name (sqlpolicy's Verb constants).
var knownVerbs = map[sqlpolicy.Verb]bool{
	sqlpolicy.VerbSelect: true, sqlpolicy.VerbInsert: true, sqlpolicy.VerbUpdate: true,
	sqlpolicy.VerbDelete: true, sqlpolicy.VerbMerge: true, sqlpolicy.VerbCopy: true,
	sqlpolicy.VerbDDL: true, sqlpolicy.VerbSet: true, sqlpolicy.VerbTransaction: true,
	sqlpolicy.VerbPrepare: true, sqlpolicy.VerbExecute: true, sqlpolicy.VerbDeallocate: true,
	sqlpolicy.VerbExplain: true, sqlpolicy.VerbCall: true, sqlpolicy.VerbDo: true,
	sqlpolicy.VerbLock: true, sqlpolicy.VerbUtility: true,
}

// ErrBadGrant is returned (wrapped) for a malformed scope grant.
var ErrBadGrant = errors.New("invalid scope grant")

func validateGrant(g sqlpolicy.Grant) error {
	if !knownVerbs[g.Verb] {
		return fmt.Errorf("%w: unknown verb %q", ErrBadGrant, g.Verb)
	}
	if len(g.Tables) == 0 {
		return fmt.Errorf("%w: %s grant names no table", ErrBadGrant, g.Verb)
	}
	for _, t := range g.Tables {
		if t == "" || strings.ContainsAny(t, " ,\t") {
			return fmt.Errorf("%w: bad table %q", ErrBadGrant, t)
		}
	}
	return nil
}

// validatePurpose accepts a short line of printable text.
func validatePurpose(p string) error {
	if len(p) > MaxPurposeLen {
		return fmt.Errorf("purpose longer than %d bytes", MaxPurposeLen)
	}
	if !utf8.ValidString(p) {
		return errors.New("purpose is not UTF-8")
	}
	for _, r := range p {
		if !unicode.IsPrint(r) {
			return errors.New("purpose holds a control character")
		}
	}
	return nil
}

// ParseGrant parses the CLI form "verb:schema.table[,schema.table...]",
// e.g. "select:public.orders,public.customers".
func ParseGrant(s string) (sqlpolicy.Grant, error) {
	verb, tables, ok := strings.Cut(s, ":")
	if !ok {
		return sqlpolicy.Grant{}, fmt.Errorf("%w: %q is not verb:table[,table...]", ErrBadGrant, s)
	}
	g := sqlpolicy.Grant{Verb: sqlpolicy.Verb(strings.ToLower(strings.TrimSpace(verb)))}
	for _, t := range strings.Split(tables, ",") {
		g.Tables = append(g.Tables, strings.TrimSpace(t))
	}
	if err := validateGrant(g); err != nil {
		return sqlpolicy.Grant{}, err
	}
	return g, nil
}

// asymmetricAlgs are the only JWS algorithms accepted. "none" and the HMAC
// family are never accepted: an HS256 token "signed" with a public key is
// the classic algorithm-confusion attack.
var asymmetricAlgs = []string{"EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

// tokenVerifier checks agent tokens from keyhole's own key and from
// external issuers' JWKS.
type tokenVerifier struct {
	localKey      ed25519.PublicKey
	localIssuer   string
	localAudience string
	jwks          []*jwksSource
	leeway        time.Duration
	revoked       *revocationList
	now           func() time.Time
	// verified remembers the local-key tokens that passed (tokenCache).
	verified tokenCache
}

// errCritHeader: RFC 7515 §4.1.11 critical extensions we do not understand
// make the token invalid; keyhole understands none.
var errCritHeader = errors.New("crit header not supported")

func (v *tokenVerifier) verify(user, token string) (*Agent, error) {
	if token == "" {
		return nil, authErrf(ReasonTokenMalformed, "empty token")
	}
	if len(token) > maxTokenLen {
		return nil, authErrf(ReasonTokenMalformed, "token longer than %d bytes", maxTokenLen)
	}
	ck := tokenCacheKey(user, token)
	if a, ok := v.verified.get(ck, v.now()); ok {
		// What can change for a token that verified: its revocation.
		if a.TokenID != "" && v.revoked != nil && v.revoked.revoked(a.TokenID) {
			return nil, authErrf(ReasonTokenRevoked, "token %s is revoked", a.TokenID)
		}
		return a, nil
	}
	var audience string
	var local bool
	keyfunc := func(t *jwt.Token) (any, error) {
		if _, ok := t.Header["crit"]; ok {
			return nil, errCritHeader
		}
		tc, ok := t.Claims.(*tokenClaims)
		if !ok {
			return nil, errors.New("unexpected claims type")
		}
		alg := t.Method.Alg()
		kid, _ := t.Header["kid"].(string)
		if v.localKey != nil && tc.Issuer == v.localIssuer {
			if alg != jwt.SigningMethodEdDSA.Alg() {
				return nil, fmt.Errorf("alg %q not accepted for issuer %q", alg, tc.Issuer)
			}
			local, audience = true, v.localAudience
			return v.localKey, nil
		}
		for _, src := range v.jwks {
			if src.issuer != tc.Issuer {
				continue
			}
			audience = src.audience
			return src.key(kid, alg)
		}
		return nil, fmt.Errorf("unknown issuer %q", tc.Issuer)
	}
	var tc tokenClaims
	p := jwt.NewParser(
		jwt.WithValidMethods(asymmetricAlgs),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(v.now),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	)
	if _, err := p.ParseWithClaims(token, &tc, keyfunc); err != nil {
		// jwt errors describe the failure, never the token's bytes.
		return nil, NewAuthError(jwtReason(err), fmt.Errorf("token: %w", err))
	}
	if audience != "" && !slices.Contains(tc.Audience, audience) {
		return nil, authErrf(ReasonTokenAudience, "token audience does not include %q", audience)
	}
	if tc.Subject == "" || tc.Subject != user {
		return nil, authErrf(ReasonTokenSubject, "token subject %q is not user %q", tc.Subject, user)
	}
	if local && tc.ID == "" {
		return nil, authErrf(ReasonTokenMalformed, "token has no jti")
	}
	if tc.ID != "" && v.revoked != nil && v.revoked.revoked(tc.ID) {
		return nil, authErrf(ReasonTokenRevoked, "token %s is revoked", tc.ID)
	}
	for _, g := range tc.Scope {
		if err := validateGrant(g); err != nil {
			return nil, NewAuthError(ReasonTokenMalformed, fmt.Errorf("token scope: %w", err))
		}
	}
	if err := validatePurpose(tc.Purpose); err != nil {
		return nil, NewAuthError(ReasonTokenMalformed, fmt.Errorf("token: %w", err))
	}
	agent := &Agent{
		Name:    tc.Subject,
		Method:  MethodToken,
		Scope:   tc.Scope,
		Expires: tc.ExpiresAt.Time,
		TokenID: tc.ID,
		Purpose: tc.Purpose,
	}
	if local {
		// The local key is the verifier's for its whole life (a new
		// configuration builds a new verifier); a JWKS key may be
		// rotated out, so those tokens are verified every time.
		v.verified.put(ck, agent, tc.ExpiresAt.Add(v.leeway), v.now())
	}
	return agent, nil
}

// tokenCache remembers local-key tokens that verified, keyed by a hash of
// the user name and the token's exact bytes, until the token expires
// (exp plus the leeway, the instant the parser would call it expired).
// An agent presents the same token on every connection, and an Ed25519
// verification costs about 70 µs (a third of the CPU of a connection
// through keyhole that runs one statement): with the cache, a known token
// costs a SHA-256 and a map lookup. What a later use must still check is
// checked on every hit: expiry (the entry's end) and revocation (the
// caller). A token whose signature, claims or subject failed is never
// remembered, so a forged or altered token is verified, and refused,
// every time.
type tokenCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]cachedToken
}

type cachedToken struct {
	agent Agent
	until time.Time
}

// maxCachedTokens bounds the cache: past it, expired entries go, and if
// none has expired the whole cache is dropped (tokens verify again).
const maxCachedTokens = 4096

func tokenCacheKey(user, token string) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(token))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// get returns a copy of the agent a remembered token verified as, while
// the token has not expired at now.
func (c *tokenCache) get(k [sha256.Size]byte, now time.Time) (*Agent, bool) {
	c.mu.Lock()
	e, ok := c.m[k]
	if ok && !now.Before(e.until) {
		delete(c.m, k)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	a := e.agent
	a.Scope = slices.Clone(a.Scope)
	return &a, true
}

func (c *tokenCache) put(k [sha256.Size]byte, a *Agent, until, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[sha256.Size]byte]cachedToken)
	}
	if len(c.m) >= maxCachedTokens {
		for key, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, key)
			}
		}
		if len(c.m) >= maxCachedTokens {
			clear(c.m)
		}
	}
	e := cachedToken{agent: *a, until: until}
	e.agent.Scope = slices.Clone(a.Scope)
	c.m[k] = e
}

// jwtReason classifies a jwt parse error. The library checks the
// signature before any claim, so a time or audience reason is only ever
// given for a token signed by a trusted key.
func jwtReason(err error) Reason {
	switch {
	case errors.Is(err, errCritHeader), errors.Is(err, jwt.ErrTokenMalformed),
		errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return ReasonTokenMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		// Unverifiable: no trusted key for the token's issuer, kid and alg.
		return ReasonTokenSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return ReasonTokenExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ReasonTokenNotYetValid
	}
	// Any other claim the library rejects (a wrongly typed one).
	return ReasonTokenMalformed
}
