package pgproxy_test

import (
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
)

// TestSessionProbe: where sessions do not log in as the catalog's login,
// keyhole reads each session's starting state with one Query after login
// and before the client's ReadyForQuery; an answer that is not one
// well-formed row ending in an idle ReadyForQuery refuses the session
// with 08001 (the analyzer would otherwise resolve names along a path the
// session does not search).
func TestSessionProbe(t *testing.T) {
	t.Parallel()
	rowDesc := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("current_user"), DataTypeOID: 19, DataTypeSize: 64},
		{Name: []byte("to_json"), DataTypeOID: 114, DataTypeSize: -1},
	}}
	row := func(vals ...[]byte) *pgproto3.DataRow { return &pgproto3.DataRow{Values: vals} }
	good := row([]byte("v-agent"), []byte(`["pg_catalog","public"]`))
	done := &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}
	idle := &pgproto3.ReadyForQuery{TxStatus: 'I'}
	send := func(msgs ...pgproto3.BackendMessage) func(be *pgproto3.Backend, _ net.Conn) {
		return func(be *pgproto3.Backend, _ net.Conn) {
			for _, m := range msgs {
				be.Send(m)
			}
		}
	}
	cases := []struct {
		name  string
		reply func(be *pgproto3.Backend, nc net.Conn)
		ok    bool
	}{
		{"answered", send(rowDesc, good, done, idle), true},
		{"notice between", send(&pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: "hi"}, rowDesc, good, done, idle), true},
		{"error", send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42501", Message: "permission denied for function to_json"}, idle), false},
		{"no row", send(rowDesc, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 0")}, idle), false},
		{"two rows", send(rowDesc, good, good, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 2")}, idle), false},
		{"not a JSON list", send(rowDesc, row([]byte("v-agent"), []byte(`{pg_catalog,public}`)), done, idle), false},
		{"NULL user", send(rowDesc, row(nil, []byte(`["public"]`)), done, idle), false},
		{"one column", send(rowDesc, row([]byte("v-agent")), done, idle), false},
		{"in a transaction after", send(rowDesc, good, done, &pgproto3.ReadyForQuery{TxStatus: 'T'}), false},
		{"unexpected message", send(rowDesc, good, &pgproto3.CopyOutResponse{}, idle), false},
		{"connection dropped", func(be *pgproto3.Backend, nc net.Conn) {
			be.Send(rowDesc)
			_ = be.Flush()
			_ = nc.Close()
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := fakeUpstream(t, tc.reply)
			_, fatal := loginOutcome(t, fakeServerCatalog(t, "postgres://u@"+addr+"/d?sslmode=disable", false))
			if tc.ok {
				assert.Nil(t, fatal)
				return
			}
			if assert.NotNil(t, fatal, "the session started without its starting state") {
				assert.Equal(t, "FATAL", fatal.Severity)
				assert.Equal(t, "08001", fatal.Code, "%s", fatal.Message)
				assert.NotContains(t, fatal.Message, "to_json", "the upstream's error stays in keyhole's log")
			}
		})
	}
}
