package identity

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MySQL authentication methods an agent secret can be checked with.
const (
	// MethodMySQLNative: mysql_native_password's scramble against
	// SHA1(SHA1(secret)).
	MethodMySQLNative Method = "mysql_native_password"
	// MethodMySQLSHA2: caching_sha2_password's fast scramble (or the
	// secret itself over TLS) against SHA256(SHA256(secret)).
	MethodMySQLSHA2 Method = "caching_sha2_password"
)

// ErrBadMySQLVerifier is returned (wrapped) for a verifier that is not in
// keyhole's MySQL verifier format.
var ErrBadMySQLVerifier = errors.New("invalid MySQL verifier")

// MySQLVerifier is what keyhole stores to check an agent secret sent over
// the MySQL protocol:
//
//   - Native is SHA1(SHA1(secret)), what MySQL stores for
//     mysql_native_password (mysql.user authentication_string without the
//     leading '*'). The client proves knowledge of SHA1(secret) against a
//     20-byte scramble.
//   - SHA2 is SHA256(SHA256(secret)), what caching_sha2_password keeps in
//     its cache for the "fast" exchange: the client proves knowledge of
//     SHA256(secret) against the scramble, so the secret never crosses
//     the wire and no TLS is needed.
//
// Neither is salted: keyhole's agent secrets are 256 random bits (NewSecret),
// which no dictionary reaches. Either part may be absent (nil) to refuse
// that method; a verifier has at least one. Like a SCRAM verifier, each part
// plus one recorded exchange lets an observer compute SHA1(secret) or
// SHA256(secret) and log in: keep verifiers as secret as the secrets.
type MySQLVerifier struct {
	Native []byte // 20 bytes, or nil
	SHA2   []byte // 32 bytes, or nil
}

const mysqlVerifierPrefix = "MYSQL"

// NewMySQLVerifier derives both parts from secret.
func NewMySQLVerifier(secret string) MySQLVerifier {
	s1 := sha1.Sum([]byte(secret))
	n := sha1.Sum(s1[:])
	s2 := sha256.Sum256([]byte(secret))
	h := sha256.Sum256(s2[:])
	return MySQLVerifier{Native: n[:], SHA2: h[:]}
}

// Encode is keyhole's storage format, MYSQL$<native>$<sha2>: native is
// MySQL's own "*" + 40 upper-case hex digits (as in mysql.user), sha2 is 64
// hex digits; an absent part is empty. It is a credential: keep it out of
// logs. There is deliberately no String (see Format).
func (v MySQLVerifier) Encode() string {
	native := ""
	if v.Native != nil {
		native = "*" + strings.ToUpper(hex.EncodeToString(v.Native))
	}
	return fmt.Sprintf("%s$%s$%s", mysqlVerifierPrefix, native, hex.EncodeToString(v.SHA2))
}

// ParseMySQLVerifier parses the format written by Encode. Errors never
// quote the input.
func ParseMySQLVerifier(s string) (MySQLVerifier, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 3 || parts[0] != mysqlVerifierPrefix {
		return MySQLVerifier{}, fmt.Errorf("%w: want %s$*<40 hex>$<64 hex>", ErrBadMySQLVerifier, mysqlVerifierPrefix)
	}
	var v MySQLVerifier
	if n := parts[1]; n != "" {
		b, err := hex.DecodeString(strings.TrimPrefix(n, "*"))
		if !strings.HasPrefix(n, "*") || err != nil || len(b) != sha1.Size {
			return MySQLVerifier{}, fmt.Errorf("%w: native part must be * and 40 hex digits", ErrBadMySQLVerifier)
		}
		v.Native = b
	}
	if h := parts[2]; h != "" {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != sha256.Size {
			return MySQLVerifier{}, fmt.Errorf("%w: caching_sha2 part must be 64 hex digits", ErrBadMySQLVerifier)
		}
		v.SHA2 = b
	}
	if v.Native == nil && v.SHA2 == nil {
		return MySQLVerifier{}, fmt.Errorf("%w: no part set", ErrBadMySQLVerifier)
	}
	return v, nil
}

// mysqlFail is a wrong MySQL secret: ReasonCredentials, so the lockout
// counts it as a guess.
func mysqlFail(agent, what string) error {
	return authErrf(ReasonCredentials, "mysql %s: wrong secret for agent %q", what, agent)
}

// VerifyNative checks a mysql_native_password response:
// SHA1(secret) XOR SHA1(scramble + SHA1(SHA1(secret))).
func (v MySQLVerifier) VerifyNative(agent string, scramble, response []byte) (*Agent, error) {
	if v.Native == nil || len(response) != sha1.Size || len(scramble) < 20 {
		return nil, mysqlFail(agent, "native")
	}
	h := sha1.New()
	h.Write(scramble[:20])
	h.Write(v.Native)
	mask := h.Sum(nil)
	stage1 := make([]byte, sha1.Size)
	for i := range stage1 {
		stage1[i] = response[i] ^ mask[i]
	}
	got := sha1.Sum(stage1)
	if subtle.ConstantTimeCompare(got[:], v.Native) != 1 {
		return nil, mysqlFail(agent, "native")
	}
	return &Agent{Name: agent, Method: MethodMySQLNative}, nil
}

// VerifySHA2 checks a caching_sha2_password fast-path response:
// SHA256(secret) XOR SHA256(SHA256(SHA256(secret)) + scramble).
func (v MySQLVerifier) VerifySHA2(agent string, scramble, response []byte) (*Agent, error) {
	if v.SHA2 == nil || len(response) != sha256.Size || len(scramble) < 20 {
		return nil, mysqlFail(agent, "caching_sha2")
	}
	h := sha256.New()
	h.Write(v.SHA2)
	h.Write(scramble[:20])
	mask := h.Sum(nil)
	stage1 := make([]byte, sha256.Size)
	for i := range stage1 {
		stage1[i] = response[i] ^ mask[i]
	}
	got := sha256.Sum256(stage1)
	if subtle.ConstantTimeCompare(got[:], v.SHA2) != 1 {
		return nil, mysqlFail(agent, "caching_sha2")
	}
	return &Agent{Name: agent, Method: MethodMySQLSHA2}, nil
}

// VerifyCleartext checks a secret the client sent whole (caching_sha2
// full authentication or mysql_clear_password, over TLS or loopback).
func (v MySQLVerifier) VerifyCleartext(agent, secret string) (*Agent, error) {
	switch {
	case v.SHA2 != nil:
		s := sha256.Sum256([]byte(secret))
		h := sha256.Sum256(s[:])
		if subtle.ConstantTimeCompare(h[:], v.SHA2) == 1 {
			return &Agent{Name: agent, Method: MethodMySQLSHA2}, nil
		}
	case v.Native != nil:
		s := sha1.Sum([]byte(secret))
		h := sha1.Sum(s[:])
		if subtle.ConstantTimeCompare(h[:], v.Native) == 1 {
			return &Agent{Name: agent, Method: MethodMySQLNative}, nil
		}
	}
	return nil, mysqlFail(agent, "cleartext")
}

// MySQLAuthenticator is implemented by authenticators that hold per-agent
// MySQL verifiers; the MySQL proxy uses it beside Authenticator.
type MySQLAuthenticator interface {
	// MySQLVerifier returns user's stored verifier; ok is false when the
	// user has none (it then authenticates with a token or certificate).
	MySQLVerifier(user string) (v MySQLVerifier, ok bool)
}

var _ MySQLAuthenticator = (*Auth)(nil)

// MySQLConfig holds per-agent MySQL verifiers (agent → MySQLVerifier
// String), inline and/or from a YAML file with the same map, as SCRAMConfig
// does for Postgres. `keyhole agent secret --mysql` prints them.
type MySQLConfig struct {
	Verifiers     map[string]string `yaml:"verifiers,omitempty" json:"verifiers,omitempty"`
	VerifiersFile string            `yaml:"verifiers_file,omitempty" json:"verifiers_file,omitempty"`
}

// MySQLVerifier implements MySQLAuthenticator.
func (a *Auth) MySQLVerifier(user string) (MySQLVerifier, bool) {
	v, ok := a.secrets.Load().mysql[user]
	return v, ok
}
