package pganalyze_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// limitValues are values for the settings that enforce limits: every unit
// Postgres accepts, units it refuses (wrong case, too long, unknown),
// every number syntax of C strtol/strtod (signs, white space, octal, hex,
// hex floats, exponents, fractions that round), zero, range edges and
// garbage.
var (
	timeValues = []string{
		"0", "1", "5000", "+5000", "-1", " 5000", "5000 ", "\t5000\n", "5s", "5 s", "5s ", "5S", "5 sec", "5sec",
		"5ms", "5 ms", "5us", "1500us", "2500us", "500us", "499us", "400us", "0.4ms", "0.5ms", "1.5ms", "2.5ms",
		"0.1s", "1.0005s", "0.0005s", "5min", "1.5min", "5m", "1h", "1.5h", "1d", "0.01d", "24d", "25d", "1h30min",
		"1e3", "1E3", "1e3ms", "1.5e3s", "1e", "1e+", "1.5e-3s", "0x10", "0X1f", "0x10s", "0x", "0xg", "0x1.8",
		"0x1.8s", "0x1p3", "010", "010s", "08", "09.5", "010.5", ".5s", "-.5", " .5", "5.", "5.s", "abc", "", "  ",
		"inf", "-inf", "nan", "1e400", "1e-400", "1e-310", "2147483647", "2147483648", "-2147483648",
		"99999999999999999999", "0.6", "1.5", "2.5", "-0", "+0", "0s", "0.0001d", "35791min", "35792min",
	}
	memValues = []string{
		"0", "-1", "63", "64", "100", "1024", "4096", "+4096", " 4096", "4096 ", "64kB", "64KB", "64kb", "64 kB",
		"1MB", "4MB", "4mb", "4 MB", "4MB ", "1.5MB", "0.5GB", "1GB", "1TB", "2TB", "2047GB", "0.001TB",
		"1500B", "1536B", "65536B", "65535B", "B", "MB", "1.5", "2.5", "1e3", "1e3kB", "0x400", "0x400kB", "010",
		"08", "1KiB", "1 MiB", "12.5kB", "100kB", "800kB", "8MB", "8191kB", "2147483647", "2147483648",
		"1e400", "nan", "abc", "",
	}
)

// TestLimitValuesAgreeWithPostgres reads every value with the analyzer
// and with the real server, and requires the same answer: the amount
// Postgres puts in effect (0 for a timeout reads as unlimited), or
// Unknown where Postgres refuses the value. Keyhole compares these
// amounts with a role's limits, so reading any value smaller than
// Postgres does would let SET exceed a limit.
func TestLimitValuesAgreeWithPostgres(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, testpg.AdminDSN())
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var blockSize string
	require.NoError(t, conn.QueryRow(ctx, "SHOW block_size").Scan(&blockSize))
	require.Equal(t, "8192", blockSize, "the analyzer assumes 8kB pages")

	settings := map[string][]string{
		"statement_timeout":                   timeValues,
		"idle_in_transaction_session_timeout": timeValues,
		"work_mem":                            memValues,
		"maintenance_work_mem":                memValues,
		"temp_buffers":                        memValues,
	}
	for name, values := range settings {
		for _, v := range values {
			pgAmount, pgOK := postgresAmount(t, ctx, conn, name, v)
			st := one(t, fmt.Sprintf("SET %s = '%s'", name, strings.ReplaceAll(v, "'", "''")))
			require.Len(t, st.Settings, 1)
			set := st.Settings[0]
			assert.NotEmpty(t, set.Limit, "%s = %q: no limit", name, v)
			if !pgOK {
				assert.True(t, set.Unknown, "%s = %q: Postgres refuses it, keyhole reads %d", name, v, set.Amount)
				continue
			}
			if assert.False(t, set.Unknown, "%s = %q: Postgres reads %d, keyhole cannot", name, v, pgAmount) {
				assert.Equal(t, pgAmount, set.Amount, "%s = %q", name, v)
			}
		}
	}
}

// postgresAmount sets name to value for one statement and returns the
// amount in effect, in the limit's unit, or ok false when Postgres refuses
// the value. The setting is read in the same statement (the target list
// is evaluated left to right), so a 1ms timeout cannot end the check.
func postgresAmount(t *testing.T, ctx context.Context, conn *pgx.Conn, name, value string) (int64, bool) {
	t.Helper()
	var setting, unit string
	err := conn.QueryRow(ctx, `SELECT set_config($1, $2, true),
		(SELECT setting FROM pg_settings WHERE name = $1), (SELECT unit FROM pg_settings WHERE name = $1)`,
		name, value).Scan(nil, &setting, &unit)
	if err != nil {
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe), "set_config(%s, %q): %v", name, value, err)
		require.Equal(t, "22023", pe.Code, "set_config(%s, %q): %v", name, value, err)
		return 0, false
	}
	n, err := strconv.ParseInt(setting, 10, 64)
	require.NoError(t, err)
	switch unit {
	case "ms":
		if n == 0 {
			return sqlpolicy.Unlimited, true
		}
		return n * int64(time.Millisecond), true
	case "kB":
		return n * 1024, true
	case "8kB":
		return n * 8192, true
	}
	t.Fatalf("%s: unexpected unit %q", name, unit)
	return 0, false
}

// TestUpstreamSettingsAreStartupDefaults connects to the real server with
// the startup parameters UpstreamSettings gives for a role's limits and
// checks that the server accepts them, that they are what the limits say
// (rounded down, never up), and that every way a session returns a
// setting to its default (RESET, SET ... TO DEFAULT, RESET ALL, DISCARD
// ALL, the end of SET LOCAL's transaction, set_config with NULL) returns
// to them, not to the server's unlimited defaults: keyhole lets RESET
// through because of this.
func TestUpstreamSettingsAreStartupDefaults(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	limits := map[sqlpolicy.Limit]int64{
		sqlpolicy.LimitStatementTimeout:         int64(90*time.Second + 500*time.Microsecond),
		sqlpolicy.LimitIdleInTransactionTimeout: int64(time.Minute),
		sqlpolicy.LimitWorkMem:                  3<<20 + 100,
		sqlpolicy.LimitMaintenanceWorkMem:       64 << 20,
		sqlpolicy.LimitTempBuffers:              8<<20 + 4096,
	}
	params := analyzer(t).UpstreamSettings(limits)
	assert.Equal(t, map[string]string{
		"statement_timeout":                   "90000",
		"idle_in_transaction_session_timeout": "60000",
		"work_mem":                            "3072kB",
		"maintenance_work_mem":                "65536kB",
		"temp_buffers":                        "8192kB",
	}, params)

	cfg, err := pgx.ParseConfig(testpg.AdminDSN())
	require.NoError(t, err)
	// DISCARD ALL drops prepared statements.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err, "the server refuses the startup parameters")
	defer conn.Close(context.Background())

	want := map[string]string{
		"statement_timeout":                   "90000",
		"idle_in_transaction_session_timeout": "60000",
		"work_mem":                            "3072",
		"maintenance_work_mem":                "65536",
		"temp_buffers":                        "1024",
	}
	check := func(after string) {
		t.Helper()
		for name, v := range want {
			var got string
			require.NoError(t, conn.QueryRow(ctx, "SELECT setting FROM pg_settings WHERE name = $1", name).Scan(&got))
			assert.Equal(t, v, got, "%s after %s", name, after)
		}
	}
	check("login")

	for name := range want {
		lift := "0"
		if name != "statement_timeout" && name != "idle_in_transaction_session_timeout" {
			lift = "1GB"
		}
		for _, reset := range []string{
			"RESET " + name,
			"SET " + name + " TO DEFAULT",
			"RESET ALL",
			"DISCARD ALL",
			"SELECT set_config('" + name + "', NULL, false)",
		} {
			_, err := conn.Exec(ctx, "SET "+name+" = '"+lift+"'")
			require.NoError(t, err)
			_, err = conn.Exec(ctx, reset)
			require.NoError(t, err, reset)
			check(reset)
		}
		_, err := conn.Exec(ctx, "BEGIN; SET LOCAL "+name+" = '"+lift+"'; COMMIT")
		require.NoError(t, err)
		check("SET LOCAL " + name + " and COMMIT")
	}
}

// FuzzLimitValue reads arbitrary values of a timeout and a memory setting:
// the analyzer never panics, an amount it reads is within what Postgres
// accepts, and trailing white space changes nothing (as in Postgres).
func FuzzLimitValue(f *testing.F) {
	a := analyzer(f)
	for _, v := range append(append([]string{}, timeValues...), memValues...) {
		f.Add(v)
	}
	read := func(name, v string) sqlpolicy.Setting {
		acc := a.Analyze("SELECT set_config('"+name+"', '"+strings.ReplaceAll(v, "'", "''")+"', false)", nil)
		if len(acc.Statements) != 1 || len(acc.Statements[0].Settings) != 1 {
			return sqlpolicy.Setting{Unknown: true, Limit: "unparsed"}
		}
		return acc.Statements[0].Settings[0]
	}
	f.Fuzz(func(t *testing.T, v string) {
		if strings.ContainsRune(v, 0) {
			return // the text is refused before parsing
		}
		for name, lim := range map[string][2]int64{
			"statement_timeout": {int64(time.Millisecond), math.MaxInt32 * int64(time.Millisecond)},
			"work_mem":          {64 << 10, math.MaxInt32 << 10},
		} {
			set := read(name, v)
			if set.Limit == "unparsed" {
				continue
			}
			if set.Limit == "" {
				t.Fatalf("%s = %q: no limit", name, v)
			}
			if !set.Unknown && set.Amount != sqlpolicy.Unlimited && (set.Amount < lim[0] || set.Amount > lim[1]) {
				t.Fatalf("%s = %q: amount %d outside [%d, %d]", name, v, set.Amount, lim[0], lim[1])
			}
			spaced := read(name, v+" \t")
			if spaced.Limit != "unparsed" && (spaced.Unknown != set.Unknown || spaced.Amount != set.Amount) {
				t.Fatalf("%s = %q reads %+v, with trailing space %+v", name, v, set, spaced)
			}
		}
	})
}
