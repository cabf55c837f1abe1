package main

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
)

// redactDSN is the second lock behind pgx's own redaction, so it is tested
// directly with error text that does quote the secret.
func TestRedactDSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, dsn, msg, secret string
	}{
		{"url", "postgres://u:s3cret@h/db", "boom postgres://u:s3cret@h/db", "s3cret"},
		{"url escaped", "postgres://u:p%40ss%2Fw%20d@h/db", "bad postgres://u:p%40ss%2Fw%20d@h/db and p@ss/w d", "p@ss"},
		{"keyword", "host=h user=u password=hunter22 dbname=db", "bad password=hunter22", "hunter22"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := redactDSN(errors.New(tc.msg), tc.dsn)
			assert.NotContains(t, got, tc.secret)
			assert.Contains(t, got, "xxxxx")
		})
	}
	assert.Equal(t, "plain error", redactDSN(errors.New("plain error"), "postgres://u@h/db"))
}
