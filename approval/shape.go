package approval

import (
	"crypto/sha256"
	"encoding/hex"
)

// ShapeKey is the fingerprint a request and a statement-scope grant are
// keyed by: 128 bits of SHA-256, in hex.
//
// It is a cryptographic hash, not the decision cache's FNV fingerprint,
// because the agent writes the statement text: with a 64-bit FNV an agent
// can compute an innocent-looking statement whose fingerprint equals that
// of a harmful one, have the innocent one approved "for this statement
// shape only", and run the harmful one under the grant. Finding two texts
// with equal 128-bit SHA-256 prefixes is out of reach.
//
// normalized is the statement with its literals replaced by placeholders:
// statements that differ only in literals are one shape. Except when the
// analysis depended on a literal's value (literalSensitive: a relation
// named by a 'customers'::regclass literal, nextval('a'), a setting named
// in set_config or current_setting): then, as in the decision cache, no
// other literal may share the decision, and the key is of the exact text,
// so a grant for nextval('a') never covers nextval('b').
func ShapeKey(normalized, exact string, literalSensitive bool) string {
	h := sha256.New()
	if literalSensitive {
		h.Write([]byte("keyhole exact statement\x00"))
		h.Write([]byte(exact))
	} else {
		h.Write([]byte("keyhole statement shape\x00"))
		h.Write([]byte(normalized))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
