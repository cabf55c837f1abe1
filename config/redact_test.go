package config_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyholedb/keyhole/config"
)

// TestRedact: the one redaction function masks every form of a DSN's
// password that an error text can quote, for both dialects.
func TestRedact(t *testing.T) {
	for _, tc := range []struct {
		name, dsn, env, msg, secret string
	}{
		{"postgres url", "postgres://u:s3cret@h/db", "", "boom postgres://u:s3cret@h/db", "s3cret"},
		{"postgres url escaped", "postgres://u:p%40ss%2Fw%20d@h/db", "", "bad postgres://u:p%40ss%2Fw%20d@h/db and p@ss/w d", "p@ss"},
		{"postgres keyword", "host=h user=u password=hunter22 dbname=db", "", "bad password=hunter22", "hunter22"},
		{"postgres PGPASSWORD", "postgres://u@h/db", "fromenv-pg", "login as u with fromenv-pg failed", "fromenv-pg"},
		{"mysql url", "mysql://root:my%3Asecret@127.0.0.1:3306/shop", "", "dial mysql://root:my%3Asecret@127.0.0.1 (my:secret)", "secret"},
		{"mariadb url", "mariadb://u:topsecret@h/db", "", "topsecret was refused", "topsecret"},
		{"mysql MYSQL_PWD", "mysql://root@127.0.0.1/shop", "fromenv-my", "password fromenv-my", "fromenv-my"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PGPASSWORD", "")
			t.Setenv("MYSQL_PWD", "")
			t.Setenv("PGPASSFILE", "/nonexistent")
			if tc.env != "" {
				t.Setenv(config.PasswordEnv(config.DSNDialect(tc.dsn)), tc.env)
			}
			got := config.Redact(tc.msg, config.DSNPassword(tc.dsn))
			assert.NotContains(t, got, tc.secret)
			assert.Contains(t, got, "xxxxx")
		})
	}
	assert.Equal(t, "plain error", config.Redact("plain error", "", "absent"))
	assert.Equal(t, "pw xxxxx", config.Redact("pw l0ng-Secret", "l0ng-Secret"))
}

func TestDSNDialect(t *testing.T) {
	t.Parallel()
	for dsn, want := range map[string]string{
		"mysql://root@127.0.0.1:3306/shop": config.DialectMySQL,
		"mariadb://h/db":                   config.DialectMySQL,
		"postgres://u@h/db":                config.DialectPostgres,
		"postgresql://u@h/db":              config.DialectPostgres,
		"host=h dbname=db":                 config.DialectPostgres,
	} {
		assert.Equal(t, want, config.DSNDialect(dsn), dsn)
	}
}
