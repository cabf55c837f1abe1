package creds_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyholedb/keyhole/creds"
)

// A Secret never prints, whatever the verb and however deep it sits. fmt
// calls no method of a value a verb does not fit (%d of a string, %s of a
// struct holding a pointer): it prints it by reflection, so a string-kind
// Secret came out as written, e.g. "%!d(creds.Secret=pw)" or, for %s of a
// struct with a *creds.Static field, "%!s(*creds.Static=&{app pw})".
func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	const pw = "canary-secret-pw"
	s := creds.NewSecret(pw)
	st := &creds.Static{User: "app", Password: s}
	lease, _ := st.Acquire(t.Context(), creds.Request{})
	type holder struct {
		Name   string
		Static *creds.Static
		Lease  *creds.Lease
		Cfg    creds.VaultConfig
	}
	h := holder{"x", st, lease, creds.VaultConfig{Auth: creds.VaultAuth{Token: s}}}
	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%t", "%b", "%o", "%e", "%p", "%U", "%c", "%8.3s"} {
		for _, arg := range []any{s, &s, *st, st, lease, h, &h, []creds.Secret{s}, map[string]creds.Secret{"k": s}, []any{h}} {
			fmt.Fprintf(&out, verb+"\n", arg)
		}
	}
	j, _ := json.Marshal(h)
	out.Write(j)
	for _, hd := range []slog.Handler{slog.NewTextHandler(&out, nil), slog.NewJSONHandler(&out, nil)} {
		slog.New(hd).Info("x", "s", s, "static", st, "h", h, "lease", lease)
	}
	for _, form := range []string{pw, fmt.Sprintf("%x", pw), fmt.Sprintf("%X", pw)} {
		assert.NotContains(t, out.String(), form)
	}
	assert.Equal(t, pw, s.Reveal())
	assert.True(t, creds.NewSecret("").Empty())
	assert.Equal(t, "", creds.Secret{}.Reveal())
}
