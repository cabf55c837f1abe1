package mysqlproxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

// settingsDecider hands out the MySQL analyzer's sessions and fixed
// upstream settings; nothing is decided in these tests.
type settingsDecider struct {
	sqlpolicy.Decider
	an       *myanalyze.Analyzer
	settings map[string]string
}

func (d settingsDecider) NewSession() sqlpolicy.Session             { return d.an.NewSession() }
func (d settingsDecider) UpstreamSettings(string) map[string]string { return d.settings }

// TestSessionSetup: what a new or reset upstream session is told and
// asked, against a scripted server for what the shared MariaDB cannot be
// made to answer (an sql_mode with ANSI_QUOTES, ORACLE, a gbk client
// character set, a refused SET). The limits go first, the readback after,
// in one write; the analyzer's session gets the mode, character set and
// database the server reports; a limit refused, or a mode or character
// set keyhole cannot lex, ends the session.
func TestSessionSetup(t *testing.T) {
	an := myanalyze.New(nil, myanalyze.Options{})
	limits := map[string]string{"max_statement_time": "90", "idle_transaction_timeout": "60"}
	tests := []struct {
		name     string
		settings map[string]string
		wantSET  string // "" = no SET sent
		setErr   bool
		row      [3]*string
		wantErr  uint16
		wantMode string // the session lexes as under this mode, with row's database
	}{
		{name: "limits and ANSI_QUOTES", settings: limits,
			wantSET: "SET SESSION idle_transaction_timeout = 60, max_statement_time = 90",
			row:     [3]*string{ptr("STRICT_TRANS_TABLES,ANSI_QUOTES"), ptr("utf8mb4"), ptr("shop")}, wantMode: "ANSI_QUOTES"},
		{name: "no limits, no database",
			row: [3]*string{ptr(""), ptr("latin1"), nil}, wantMode: ""},
		{name: "limit refused", settings: limits, wantSET: "SET SESSION idle_transaction_timeout = 60, max_statement_time = 90", setErr: true,
			wantErr: erUnknownError},
		{name: "sql_mode keyhole does not model", row: [3]*string{ptr("ORACLE"), ptr("utf8mb4"), ptr("shop")}, wantErr: erUnknownError},
		{name: "client character set that hides backslashes", row: [3]*string{ptr(""), ptr("gbk"), ptr("shop")}, wantErr: erUnknownCharset},
	}
	for _, bad := range []map[string]string{{"max_statement_time": "1; DROP TABLE t"}, {"x y": "1"}, {"max_statement_time": "1."}} {
		c := &conn{srv: &Server{cfg: Config{Decider: settingsDecider{an: an, settings: bad}}}, agent: &identity.Agent{Name: "a"}}
		_, err := c.appendSetup(nil)
		var se *sqlError
		require.True(t, errors.As(err, &se), "%v: a session never starts without its limits", bad)
		assert.True(t, se.fatal)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := settingsDecider{an: an, settings: tc.settings}
			client, server := net.Pipe()
			t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
			c := &conn{
				srv:     &Server{cfg: Config{Decider: d}},
				log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
				agent:   &identity.Agent{Name: "a"},
				session: d.NewSession(),
				caps:    relayCaps,
				upConn:  client,
				urd:     newReader(client, readBufSize),
			}
			got := make(chan []string, 1)
			go func() {
				// One write holds every command: read them all, then answer.
				rd := newReader(server, readBufSize)
				var cmds []string
				want := 1
				if tc.wantSET != "" {
					want = 2
				}
				for range want {
					p, _, err := rd.readPayload(1 << 20)
					if err != nil {
						break
					}
					cmds = append(cmds, string(p[1:]))
				}
				got <- cmds
				var out []byte
				if tc.wantSET != "" {
					if tc.setErr {
						out, _ = appendPacket(out, 1, append([]byte{0xff, 0x4e, 0x04, '#'}, "HY000Variable is read only"...))
						_, _ = server.Write(out)
						return
					}
					out, _ = appendPacket(out, 1, []byte{0, 0, 0, 2, 0, 0, 0})
				}
				seq := byte(1)
				out, seq = appendPacket(out, seq, []byte{3})
				for _, name := range []string{"@@SESSION.sql_mode", "@@SESSION.character_set_client", "DATABASE()"} {
					out, seq = appendPacket(out, seq, appendLenencString([]byte("\x03def"), name))
				}
				var row []byte
				for _, v := range tc.row {
					if v == nil {
						row = append(row, 0xfb)
					} else {
						row = appendLenencString(row, *v)
					}
				}
				out, seq = appendPacket(out, seq, row)
				out, _ = appendPacket(out, seq, []byte{0xfe, 0, 0, 2, 0, 0, 0})
				_, _ = server.Write(out)
			}()
			var err error
			c.upBuf, err = c.appendSetup(nil)
			require.NoError(t, err)
			go func() { _ = c.flushUpstream() }()
			err = c.readSetup(context.Background())
			cmds := <-got
			if tc.wantSET != "" {
				require.Len(t, cmds, 2)
				assert.Equal(t, tc.wantSET, cmds[0])
			}
			assert.Equal(t, setupQuery, cmds[len(cmds)-1])
			if tc.wantErr != 0 {
				var se *sqlError
				require.True(t, errors.As(err, &se), "%v", err)
				assert.Equal(t, tc.wantErr, se.num, se.message)
				assert.True(t, se.fatal)
				return
			}
			require.NoError(t, err)
			db := ""
			if tc.row[2] != nil {
				db = *tc.row[2]
			}
			assert.Equal(t, db, c.database)
			// Sessions in the same state share a generation.
			ref := an.NewSession().(*myanalyze.Session)
			require.NoError(t, ref.SetSQLMode(tc.wantMode))
			require.NoError(t, ref.SetClientCharset(*tc.row[1]))
			ref.SetDatabase(db)
			assert.Equal(t, ref.Generation(), c.session.Generation())
			other := an.NewSession().(*myanalyze.Session)
			require.NoError(t, other.SetSQLMode("NO_BACKSLASH_ESCAPES"))
			other.SetDatabase(db)
			assert.NotEqual(t, other.Generation(), c.session.Generation())
		})
	}
}

func ptr(s string) *string { return &s }

// TestResetSetupFails: when the reset session cannot be set up again (the
// role's limit refused), the error that ends the session is the answer
// to COM_RESET_CONNECTION, with its sequence id, not an OK followed by it.
func TestResetSetupFails(t *testing.T) {
	an := myanalyze.New(nil, myanalyze.Options{})
	d := settingsDecider{an: an, settings: map[string]string{"max_statement_time": "90"}}
	cl, clPeer := net.Pipe()
	up, upPeer := net.Pipe()
	t.Cleanup(func() { _ = cl.Close(); _ = clPeer.Close(); _ = up.Close(); _ = upPeer.Close() })
	c := &conn{
		srv:     &Server{cfg: Config{Decider: d}},
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		agent:   &identity.Agent{Name: "a"},
		session: d.NewSession(),
		caps:    relayCaps,
		client:  cl,
		upConn:  up,
		urd:     newReader(up, readBufSize),
		stmts:   map[uint32]*prepared{},
		seq:     1,
	}
	go func() {
		rd := newReader(upPeer, readBufSize)
		for range 3 { // the reset, the SET, the readback
			if _, _, err := rd.readPayload(1 << 20); err != nil {
				return
			}
		}
		out, _ := appendPacket(nil, 1, []byte{0, 0, 0, 2, 0, 0, 0})
		out, _ = appendPacket(out, 1, append([]byte{0xff, 0x4e, 0x04, '#'}, "HY000Variable is read only"...))
		_, _ = upPeer.Write(out)
	}()
	got := make(chan []byte, 1)
	go func() {
		p, seq, err := newReader(clPeer, readBufSize).readPayload(1 << 20)
		if err != nil {
			got <- nil
			return
		}
		got <- append([]byte{seq}, p...)
	}()
	err := c.onResetConnection([]byte{comResetConnection})
	var se *sqlError
	require.True(t, errors.As(err, &se), "%v", err)
	go c.finish(err)
	p := <-got
	require.NotNil(t, p)
	assert.Equal(t, byte(1), p[0], "the answer to the reset")
	assert.Equal(t, byte(0xff), p[1], "an ERR, not the reset's OK")
	assert.Equal(t, uint16(erUnknownError), uint16(p[2])|uint16(p[3])<<8)
}
