package identity_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/identity"
)

// A verifier is a credential: however it is printed (fmt verbs, as a
// field of a struct or map, slog text or JSON, encoding/json), its key
// material must not show. Before Encode replaced String, every %v of a
// verifier printed the whole stored verifier.
func TestVerifiersNeverPrint(t *testing.T) {
	t.Parallel()
	v, err := identity.NewVerifier("canary-secret", 4096)
	require.NoError(t, err)
	m := identity.NewMySQLVerifier("canary-secret")
	holder := struct {
		Agent string
		V     identity.Verifier
		M     identity.MySQLVerifier
		Map   map[string]identity.Verifier
		Ptr   *identity.MySQLVerifier
	}{"bot", v, m, map[string]identity.Verifier{"bot": v}, &m}

	var out strings.Builder
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		for _, arg := range []any{v, &v, m, &m, holder, &holder} {
			fmt.Fprintf(&out, verb+"\n", arg)
		}
	}
	fmt.Fprintln(&out, v, m, holder)
	j, err := json.Marshal(holder)
	require.NoError(t, err)
	out.Write(j)
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&logs, nil), slog.NewJSONHandler(&logs, nil)} {
		slog.New(h).Info("x", "v", v, "m", m, "holder", holder, "ptr", &v)
	}
	out.Write(logs.Bytes())

	text := out.String()
	for name, secret := range map[string][]byte{"StoredKey": v.StoredKey, "ServerKey": v.ServerKey, "Native": m.Native, "SHA2": m.SHA2} {
		for _, form := range []string{base64.StdEncoding.EncodeToString(secret), hex.EncodeToString(secret), strings.ToUpper(hex.EncodeToString(secret))} {
			assert.NotContains(t, text, form, "%s printed", name)
		}
		// %v of a []byte prints decimal bytes.
		assert.NotContains(t, text, fmt.Sprint(secret), "%s printed", name)
	}
	assert.NotContains(t, text, v.Encode())
	assert.NotContains(t, text, m.Encode())
	assert.Contains(t, text, "[redacted]")
}
