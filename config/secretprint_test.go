package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
)

// The passwords ResolveSecrets and ParseUpstreamURL put in a Config never
// print: not with any fmt verb, not through slog, not as JSON. They were
// plain strings, so a %+v of the static login or the store section (a
// debug line, a panic value, a test failure) printed them.
func TestResolvedPasswordsNeverPrint(t *testing.T) {
	t.Parallel()
	const staticPW, storePW, urlPW = "canary-static-pw", "canary-store-pw", "canary-url-pw"
	c, err := config.Parse("k.yaml", []byte(minimal+"store: {url: postgres://keyhole@db/keyhole, password_env: STORE_PW}\n"))
	require.NoError(t, err)
	require.NoError(t, c.ResolveSecrets(func(k string) string {
		return map[string]string{"TEST_PW": staticPW, "STORE_PW": storePW}[k]
	}))
	_, login, err := config.ParseUpstreamURL("postgres://app:" + urlPW + "@127.0.0.1/shop")
	require.NoError(t, err)
	require.Equal(t, urlPW, login.Password.Reveal())

	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		for _, arg := range []any{*c.Creds.Static, c.Creds.Static, c.Store, &c.Store, *login, login, c.Creds} {
			fmt.Fprintf(&out, verb+"\n", arg)
		}
	}
	j, err := json.Marshal(struct {
		S *config.Static
		T config.Store
	}{c.Creds.Static, c.Store})
	require.NoError(t, err)
	out.Write(j)
	for _, h := range []slog.Handler{slog.NewTextHandler(&out, nil), slog.NewJSONHandler(&out, nil)} {
		slog.New(h).Info("x", "static", c.Creds.Static, "store", c.Store, "login", login)
	}
	for _, pw := range []string{staticPW, storePW, urlPW} {
		assert.NotContains(t, out.String(), pw)
		assert.NotContains(t, out.String(), fmt.Sprintf("%x", pw))
	}
}
