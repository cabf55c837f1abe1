package identity

import (
	"fmt"
	"log/slog"
)

// redacted is how a verifier prints. A verifier is a credential (with one
// recorded exchange it lets an observer log in as the agent), so fmt, slog
// and encoding/json never show its bytes: not with %v, %+v, %#v, %x, nor
// as a field of a struct or a map value that is printed.
const redacted = "[redacted]"

func (Verifier) Format(f fmt.State, _ rune)      { _, _ = f.Write([]byte(redacted)) }
func (Verifier) LogValue() slog.Value            { return slog.StringValue(redacted) }
func (Verifier) MarshalJSON() ([]byte, error)    { return []byte(`"` + redacted + `"`), nil }
func (MySQLVerifier) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }
func (MySQLVerifier) LogValue() slog.Value       { return slog.StringValue(redacted) }
func (MySQLVerifier) MarshalJSON() ([]byte, error) {
	return []byte(`"` + redacted + `"`), nil
}
