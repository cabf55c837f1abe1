package identity

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SCRAM-SHA-256 parameters. Postgres (src/common/scram-common.c) uses a
// 16-byte salt and 4096 iterations by default; RFC 7677 asks for at least
// 4096.
const (
	scramMechanism     = "SCRAM-SHA-256"
	DefaultSCRAMIter   = 4096
	scramSaltLen       = 16
	scramNonceLen      = 18 // random bytes; base64 → 24 printable chars
	secretLen          = 32
	maxSCRAMMessageLen = 1024
)

// ErrBadVerifier is returned (wrapped) for a verifier that is not in
// Postgres's SCRAM-SHA-256 format.
var ErrBadVerifier = errors.New("invalid SCRAM verifier")

// Verifier is a stored SCRAM-SHA-256 credential (RFC 5802 §3): what the
// server keeps instead of the secret.
type Verifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte // H(ClientKey)
	ServerKey  []byte // HMAC(SaltedPassword, "Server Key")
}

// Encode is Postgres's pg_authid.rolpassword format:
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, base64.
// It is a credential (it allows impersonating the server to a client that
// trusts it): keep it out of logs. There is deliberately no String: a
// Verifier printed with fmt or slog, alone or inside a struct, shows
// "[redacted]" (see Format).
func (v Verifier) Encode() string {
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("%s$%d:%s$%s:%s", scramMechanism, v.Iterations, enc(v.Salt), enc(v.StoredKey), enc(v.ServerKey))
}

// ParseVerifier parses the Postgres format written by Verifier.Encode. Errors
// never quote the input.
func ParseVerifier(s string) (Verifier, error) {
	mech, rest, ok1 := strings.Cut(s, "$")
	params, keys, ok2 := strings.Cut(rest, "$")
	iterS, saltS, ok3 := strings.Cut(params, ":")
	storedS, serverS, ok4 := strings.Cut(keys, ":")
	if !ok1 || !ok2 || !ok3 || !ok4 || mech != scramMechanism {
		return Verifier{}, fmt.Errorf("%w: want %s$<iter>:<salt>$<StoredKey>:<ServerKey>", ErrBadVerifier, scramMechanism)
	}
	iter, err := strconv.Atoi(iterS)
	if err != nil || iter < 1 {
		return Verifier{}, fmt.Errorf("%w: bad iteration count", ErrBadVerifier)
	}
	dec := base64.StdEncoding.DecodeString
	salt, err1 := dec(saltS)
	stored, err2 := dec(storedS)
	server, err3 := dec(serverS)
	if err1 != nil || err2 != nil || err3 != nil || len(salt) == 0 ||
		len(stored) != sha256.Size || len(server) != sha256.Size {
		return Verifier{}, fmt.Errorf("%w: bad base64 field", ErrBadVerifier)
	}
	return Verifier{Iterations: iter, Salt: salt, StoredKey: stored, ServerKey: server}, nil
}

// NewVerifier derives a verifier from secret with a random salt.
// The secret is used as is: SASLprep (RFC 4013) is the identity on the
// printable ASCII secrets NewSecret makes.
func NewVerifier(secret string, iterations int) (Verifier, error) {
	if iterations <= 0 {
		iterations = DefaultSCRAMIter
	}
	salt := make([]byte, scramSaltLen)
	_, _ = rand.Read(salt)
	return DeriveVerifier(secret, salt, iterations)
}

// DeriveVerifier computes the verifier for secret, salt and iterations
// (RFC 5802 §3).
func DeriveVerifier(secret string, salt []byte, iterations int) (Verifier, error) {
	salted, err := pbkdf2.Key(sha256.New, secret, salt, iterations, sha256.Size)
	if err != nil {
		return Verifier{}, fmt.Errorf("derive scram key: %w", err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	return Verifier{
		Iterations: iterations,
		Salt:       salt,
		StoredKey:  stored[:],
		ServerKey:  hmacSHA256(salted, "Server Key"),
	}, nil
}

// NewSecret returns a new random agent secret: 32 random bytes, base64url,
// which every driver can send as a password.
func NewSecret() string {
	b := make([]byte, secretLen)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// scramServer is one server-side SCRAM-SHA-256 exchange without channel
// binding (keyhole offers only SCRAM-SHA-256, never -PLUS).
type scramServer struct {
	agent    string
	v        Verifier
	step     int
	gs2      string // the client's GS2 header, echoed base64 in c=
	first    string // client-first-message-bare
	srvFirst string // server-first-message
	nonce    string // client nonce + server nonce
	snonce   string // server nonce; random unless preset for test vectors
	done     *Agent
	// mock: the agent has no verifier and v is made up (see mockVerifier);
	// only the log detail of the failure differs.
	mock bool
}

func newSCRAMServer(agent string, v Verifier, serverNonce string) *scramServer {
	if serverNonce == "" {
		b := make([]byte, scramNonceLen)
		_, _ = rand.Read(b)
		serverNonce = base64.StdEncoding.EncodeToString(b)
	}
	return &scramServer{agent: agent, v: v, snonce: serverNonce}
}

// scramFail is a SCRAM message keyhole cannot accept: no guess was tested.
func scramFail(format string, args ...any) error {
	return authErrf(ReasonSCRAMProtocol, "scram: "+format, args...)
}

// Step implements SCRAMConversation.
func (s *scramServer) Step(msg []byte) ([]byte, bool, error) {
	if len(msg) > maxSCRAMMessageLen {
		return nil, false, scramFail("message longer than %d bytes", maxSCRAMMessageLen)
	}
	switch s.step {
	case 0:
		s.step = 1
		out, err := s.clientFirst(string(msg))
		if err != nil {
			s.step = 3
			return nil, false, err
		}
		return []byte(out), false, nil
	case 1:
		s.step = 3
		out, err := s.clientFinal(string(msg))
		if err != nil {
			return nil, false, err
		}
		return []byte(out), true, nil
	}
	return nil, false, scramFail("conversation already finished")
}

// clientFirst handles gs2-header client-first-message-bare (RFC 5802 §7):
//
//	gs2-cbind-flag "," [ authzid ] "," username "," nonce ["," extensions]
func (s *scramServer) clientFirst(msg string) (string, error) {
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return "", scramFail("malformed client-first-message")
	}
	switch {
	case flag == "n" || flag == "y":
		// "n": client does not support channel binding; "y": it does but
		// thinks the server does not — true, we never advertise -PLUS.
	case strings.HasPrefix(flag, "p="):
		return "", scramFail("channel binding requested but SCRAM-SHA-256-PLUS is not offered")
	default:
		return "", scramFail("bad gs2 channel binding flag")
	}
	authzid, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return "", scramFail("malformed gs2 header")
	}
	if authzid != "" {
		// Like Postgres, no authorization identity: the agent is the
		// startup user.
		return "", scramFail("authorization identity is not supported")
	}
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || strings.HasPrefix(attrs[0], "m=") {
		// "m" is reserved for mandatory extensions we do not support.
		return "", scramFail("unsupported mandatory extension or malformed message")
	}
	if !strings.HasPrefix(attrs[0], "n=") {
		return "", scramFail("missing username attribute")
	}
	// The SCRAM username is ignored, as Postgres does: drivers send the
	// startup user or an empty string, and the agent is the startup user.
	if !strings.HasPrefix(attrs[1], "r=") || len(attrs[1]) == 2 {
		return "", scramFail("missing client nonce")
	}
	cnonce := attrs[1][2:]
	if !printableNonce(cnonce) {
		return "", scramFail("client nonce has invalid characters")
	}
	s.gs2 = flag + "," + authzid + ","
	s.first = bare
	s.nonce = cnonce + s.snonce
	s.srvFirst = fmt.Sprintf("r=%s,s=%s,i=%d", s.nonce, base64.StdEncoding.EncodeToString(s.v.Salt), s.v.Iterations)
	return s.srvFirst, nil
}

// printableNonce: RFC 5802 "printable" = %x21-2B / %x2D-7E (no comma).
func printableNonce(n string) bool {
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}

// clientFinal handles client-final-message (RFC 5802 §7):
//
//	"c=" base64(gs2-header) ",r=" nonce ["," extensions] ",p=" proof
func (s *scramServer) clientFinal(msg string) (string, error) {
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return "", scramFail("missing proof")
	}
	withoutProof, proofB64 := msg[:i], msg[i+3:]
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return "", scramFail("malformed client-final-message")
	}
	cb, err := base64.StdEncoding.DecodeString(attrs[0][2:])
	if err != nil || string(cb) != s.gs2 {
		return "", scramFail("channel binding data does not match gs2 header")
	}
	if subtle.ConstantTimeCompare([]byte(attrs[1][2:]), []byte(s.nonce)) != 1 {
		return "", scramFail("nonce mismatch")
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil || len(proof) != sha256.Size {
		return "", scramFail("malformed proof")
	}
	authMessage := s.first + "," + s.srvFirst + "," + withoutProof
	clientSig := hmacSHA256(s.v.StoredKey, authMessage)
	clientKey := make([]byte, sha256.Size)
	for j := range clientKey {
		clientKey[j] = proof[j] ^ clientSig[j]
	}
	stored := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(stored[:], s.v.StoredKey) != 1 {
		if s.mock {
			return "", authErrf(ReasonCredentials, "scram: no verifier for agent %q", s.agent)
		}
		return "", authErrf(ReasonCredentials, "scram: wrong proof for agent %q", s.agent)
	}
	s.done = &Agent{Name: s.agent, Method: MethodSCRAM}
	return "v=" + base64.StdEncoding.EncodeToString(hmacSHA256(s.v.ServerKey, authMessage)), nil
}

// Agent implements SCRAMConversation.
func (s *scramServer) Agent() *Agent { return s.done }

// mockVerifier makes up a verifier for an agent that has none, so that the
// SCRAM exchange for an unknown name looks like one for a known name with
// a wrong secret (what Postgres does with scram_mock_salt): the salt is
// derived from key and the name, so it is the same on every attempt, and
// the keys are random, so no proof matches.
func mockVerifier(key []byte, agent string) Verifier {
	salt := hmac.New(sha256.New, key)
	salt.Write([]byte(agent))
	stored := make([]byte, sha256.Size)
	server := make([]byte, sha256.Size)
	_, _ = rand.Read(stored)
	_, _ = rand.Read(server)
	return Verifier{Iterations: DefaultSCRAMIter, Salt: salt.Sum(nil)[:scramSaltLen], StoredKey: stored, ServerKey: server}
}
