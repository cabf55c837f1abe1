package pgproxy_test

import (
	"crypto/md5" //nolint:gosec // Postgres's md5 password method
	"encoding/hex"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/xdg-go/scram"
)

// loginOutcome logs in to f as bot and returns the ParameterStatus values
// the client got and the session's error, if the login failed.
func loginOutcome(t *testing.T, f fakeEnv) (params map[string]string, fatal *pgproto3.ErrorResponse) {
	t.Helper()
	nc, err := net.Dial("tcp", f.addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	r := &rawClient{t: t, conn: nc, fe: pgproto3.NewFrontend(nc, nc)}
	r.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "bot", "database": "d"}})
	require.NoError(t, r.fe.Flush())
	require.IsType(t, &pgproto3.AuthenticationCleartextPassword{}, r.recv())
	r.fe.Send(&pgproto3.PasswordMessage{Password: f.token})
	require.NoError(t, r.fe.Flush())
	params = map[string]string{}
	for done := false; !done; {
		switch m := r.recv().(type) {
		case *pgproto3.ParameterStatus:
			params[m.Name] = m.Value
		case *pgproto3.ErrorResponse:
			c := *m
			return params, &c
		case *pgproto3.ReadyForQuery:
			done = true
		}
	}
	// The session works.
	kinds := r.query("SELECT 1")
	assert.Contains(t, kinds, "D")
	return params, nil
}

// fakeAuthUpstream is a Postgres peer that asks for a password by method
// ("password", "md5" or "scram") and accepts user u with password pw; with
// forgeSignature it answers a right SCRAM proof with a wrong server
// signature, as a server that does not know the verifier would. Each
// login's startup parameters go to started.
func fakeAuthUpstream(t *testing.T, method, pw string, forgeSignature bool, started chan<- map[string]string) string {
	t.Helper()
	refuse := func(be *pgproto3.Backend) {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: `password authentication failed for user "u"`})
		_ = be.Flush()
	}
	login := func(be *pgproto3.Backend, sm *pgproto3.StartupMessage) bool {
		if started != nil {
			started <- sm.Parameters
		}
		switch method {
		case "password":
			be.Send(&pgproto3.AuthenticationCleartextPassword{})
			_ = be.Flush()
			be.SetAuthType(pgproto3.AuthTypeCleartextPassword)
			m, err := be.Receive()
			if err != nil {
				return false
			}
			if m.(*pgproto3.PasswordMessage).Password != pw {
				refuse(be)
				return false
			}
		case "md5":
			salt := [4]byte{1, 2, 3, 4}
			be.Send(&pgproto3.AuthenticationMD5Password{Salt: salt})
			_ = be.Flush()
			be.SetAuthType(pgproto3.AuthTypeMD5Password)
			m, err := be.Receive()
			if err != nil {
				return false
			}
			inner := md5.Sum([]byte(pw + "u"))                                         //nolint:gosec // see import
			outer := md5.Sum(append([]byte(hex.EncodeToString(inner[:])), salt[:]...)) //nolint:gosec // see import
			if m.(*pgproto3.PasswordMessage).Password != "md5"+hex.EncodeToString(outer[:]) {
				refuse(be)
				return false
			}
		case "scram":
			return fakeSCRAM(be, pw, forgeSignature, refuse)
		}
		return true
	}
	return fakePeer(t, login, func(be *pgproto3.Backend, _ net.Conn) {
		be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("x"), DataTypeOID: 23, DataTypeSize: 4}}})
		be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("1")}})
		be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	})
}

// fakeSCRAM runs the server side of SCRAM-SHA-256 (xdg-go/scram, an
// implementation independent of keyhole's) and reports whether the
// client proved the password.
func fakeSCRAM(be *pgproto3.Backend, pw string, forgeSignature bool, refuse func(*pgproto3.Backend)) bool {
	client, err := scram.SHA256.NewClient("", pw, "")
	if err != nil {
		return false
	}
	stored := client.GetStoredCredentials(scram.KeyFactors{Salt: "0123456789abcdef", Iters: 4096})
	server, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return stored, nil })
	if err != nil {
		return false
	}
	conv := server.NewConversation()
	be.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}})
	_ = be.Flush()
	be.SetAuthType(pgproto3.AuthTypeSASL)
	m, err := be.Receive()
	if err != nil {
		return false
	}
	init, ok := m.(*pgproto3.SASLInitialResponse)
	if !ok || init.AuthMechanism != "SCRAM-SHA-256" {
		return false
	}
	first, err := conv.Step(string(init.Data))
	if err != nil {
		refuse(be)
		return false
	}
	be.Send(&pgproto3.AuthenticationSASLContinue{Data: []byte(first)})
	_ = be.Flush()
	be.SetAuthType(pgproto3.AuthTypeSASLContinue)
	m, err = be.Receive()
	if err != nil {
		return false
	}
	final, err := conv.Step(string(m.(*pgproto3.SASLResponse).Data))
	if err != nil || !conv.Valid() {
		refuse(be)
		return false
	}
	if forgeSignature {
		final = "v=" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	}
	be.Send(&pgproto3.AuthenticationSASLFinal{Data: []byte(final)})
	return true
}

// keyhole logs in to the upstream with the password methods Postgres
// offers, relays the server's parameters (the upstream login hidden
// behind the agent), and a refused login is the client's 08001 without
// the server's text.
func TestUpstreamLogin(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"password", "md5", "scram"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			started := make(chan map[string]string, 2)
			addr := fakeAuthUpstream(t, method, "s3cr,et=pw", false, started)
			params, fatal := loginOutcome(t, fakeServerURL(t, "postgres://u:s3cr%2Cet%3Dpw@"+addr+"/d?sslmode=disable"))
			require.Nil(t, fatal, "%+v", fatal)
			assert.Equal(t, "bot", params["session_authorization"])
			assert.Equal(t, "15.0", params["server_version"])
			sp := <-started
			assert.Equal(t, "u", sp["user"])
			assert.Equal(t, "d", sp["database"])
			assert.Equal(t, "UTF8", sp["client_encoding"])
			assert.Equal(t, "keyhole:bot", sp["application_name"])

			_, fatal = loginOutcome(t, fakeServerURL(t, "postgres://u:wrong@"+addr+"/d?sslmode=disable"))
			require.NotNil(t, fatal)
			assert.Equal(t, "08001", fatal.Code)
			assert.Equal(t, "keyhole: upstream unavailable", fatal.Message)
		})
	}
	// A password SCRAM must SASLprep goes through pgconn.
	t.Run("scram non-ASCII password", func(t *testing.T) {
		t.Parallel()
		addr := fakeAuthUpstream(t, "scram", "pässwörd", false, nil)
		params, fatal := loginOutcome(t, fakeServerURL(t, "postgres://u:p%C3%A4ssw%C3%B6rd@"+addr+"/d?sslmode=disable"))
		require.Nil(t, fatal, "%+v", fatal)
		assert.Equal(t, "bot", params["session_authorization"])
		_, fatal = loginOutcome(t, fakeServerURL(t, "postgres://u:passwort@"+addr+"/d?sslmode=disable"))
		require.NotNil(t, fatal)
		assert.Equal(t, "08001", fatal.Code)
	})
	// A server that cannot prove it knows the verifier is refused.
	t.Run("forged SCRAM signature", func(t *testing.T) {
		t.Parallel()
		addr := fakeAuthUpstream(t, "scram", "pw", true, nil)
		_, fatal := loginOutcome(t, fakeServerURL(t, "postgres://u:pw@"+addr+"/d?sslmode=disable"))
		require.NotNil(t, fatal)
		assert.Equal(t, "08001", fatal.Code)
	})
}
