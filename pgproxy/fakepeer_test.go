package pgproxy_test

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/gateway"
	"github.com/keyholedb/keyhole/identity"
)

// fakeUpstream accepts one login (trust) per connection and then answers
// every Query with reply: protocol corners a real Postgres never produces.
func fakeUpstream(t *testing.T, reply func(be *pgproto3.Backend, nc net.Conn)) string {
	t.Helper()
	return fakePeer(t, nil, reply)
}

// fakePeer is a Postgres peer on a fresh loopback listener. Per
// connection it reads the startup message, runs login (nil: trust), which
// reports whether the client proved itself, sends what Postgres sends
// after a successful login, and answers every Query with reply.
func fakePeer(t *testing.T, login func(be *pgproto3.Backend, sm *pgproto3.StartupMessage) bool, reply func(be *pgproto3.Backend, nc net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				be := pgproto3.NewBackend(nc, nc)
				msg, err := be.ReceiveStartupMessage()
				sm, ok := msg.(*pgproto3.StartupMessage)
				if err != nil || !ok || login != nil && !login(be, sm) {
					return
				}
				be.Send(&pgproto3.AuthenticationOk{})
				be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
				be.Send(&pgproto3.ParameterStatus{Name: "session_authorization", Value: sm.Parameters["user"]})
				be.Send(&pgproto3.BackendKeyData{ProcessID: 42, SecretKey: []byte{1, 2, 3, 4}})
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
				if be.Flush() != nil {
					return
				}
				for {
					msg, err := be.Receive()
					if err != nil {
						return
					}
					if _, ok := msg.(*pgproto3.Query); ok {
						reply(be, nc)
						_ = be.Flush()
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestUpstreamProtocolErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]func(be *pgproto3.Backend, nc net.Conn){
		"authentication request mid-session": func(be *pgproto3.Backend, _ net.Conn) {
			be.Send(&pgproto3.AuthenticationCleartextPassword{})
		},
		"unsolicited ready for query": func(be *pgproto3.Backend, _ net.Conn) {
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		},
		"copy both": func(be *pgproto3.Backend, _ net.Conn) {
			be.Send(&pgproto3.CopyBothResponse{})
		},
		"connection dropped mid-result": func(be *pgproto3.Backend, nc net.Conn) {
			be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("x"), DataTypeOID: 23, DataTypeSize: 4}}})
			_ = be.Flush()
			_ = nc.Close()
		},
	}
	for name, reply := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			addr := fakeUpstream(t, reply)
			srv := fakeServer(t, addr)
			r := srv.raw(t)
			r.fe.Send(&pgproto3.Query{String: "SELECT 1"})
			require.NoError(t, r.fe.Flush())
			// keyhole ends the session with one FATAL (after relaying the
			// first ReadyForQuery when a second one follows it).
			var fatal *pgproto3.ErrorResponse
			for fatal == nil {
				msg, err := r.fe.Receive()
				require.NoError(t, err, "keyhole closed without an error")
				if er, ok := msg.(*pgproto3.ErrorResponse); ok {
					fatal = er
				}
			}
			assert.Equal(t, "FATAL", fatal.Severity)
			assert.Contains(t, []string{"08006", "0A000"}, fatal.Code, "err: %s", fatal.Message)
		})
	}
}

type fakeEnv struct{ addr, token string }

// raw logs in as bot with a hand-driven client.
func (f fakeEnv) raw(t *testing.T) *rawClient {
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
	r.until(&pgproto3.ReadyForQuery{})
	return r
}

// fakeServer is a keyhole gateway in front of the fake peer at addr with
// an allow-everything-known policy and an empty catalog (SELECT 1 needs
// no tables): the gateway does not read a schema from the peer.
func fakeServer(t *testing.T, addr string) fakeEnv {
	return fakeServerURL(t, "postgres://u@"+addr+"/d?sslmode=disable")
}

// fakeServerURL is fakeServer with the upstream URL upURL (user, password,
// sslmode). The catalog stands for sessions that log in as it was read
// (SessionsShareLogin, as with static logins): keyhole runs no session
// probe.
func fakeServerURL(t *testing.T, upURL string) fakeEnv {
	t.Helper()
	return fakeServerCatalog(t, upURL, true)
}

// fakeServerCatalog is fakeServerURL; shared false makes keyhole probe
// each session's starting state after login (as with Vault logins).
func fakeServerCatalog(t *testing.T, upURL string, shared bool) fakeEnv {
	t.Helper()
	dir := t.TempDir()
	priv, err := identity.GenerateKey()
	require.NoError(t, err)
	keyPath := filepath.Join(dir, "token.key")
	require.NoError(t, identity.WriteKeyFile(keyPath, priv))
	policy := filepath.Join(dir, "policy.yaml")
	require.NoError(t, os.WriteFile(policy, []byte("roles:\n  r: {upstream: fake}\nagents:\n  bot: {role: r}\n"), 0o600))
	cfg := &config.Config{
		Listen:    config.Listen{Postgres: "127.0.0.1:0"},
		TLS:       config.TLS{GenerateSelfSigned: true},
		Upstreams: map[string]config.Upstream{"": upstream(t, upURL)},
		Identity:  identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: keyPath + ".pub"}},
		Audit:     config.Audit{File: filepath.Join(dir, "audit.jsonl")},
		Policy:    config.Policy{File: policy, ReloadInterval: -1},
	}
	_, kaddr := run(t, cfg, gateway.Options{
		Logger:   slog.New(slog.DiscardHandler),
		Catalogs: map[string]*catalog.Catalog{"": {Dialect: config.DialectPostgres, Database: "d", SessionsShareLogin: shared}},
		FrontEnds: map[string]func(gateway.FrontEndConfig) (gateway.FrontEnd, error){
			config.DialectPostgres: func(c gateway.FrontEndConfig) (gateway.FrontEnd, error) {
				c.TLS = nil // the raw client speaks plain text
				return gateway.NewPostgresFrontEnd(c)
			},
		},
	})
	tok, err := identity.Mint(priv, identity.Claims{Agent: "bot", TTL: time.Hour})
	require.NoError(t, err)
	return fakeEnv{addr: kaddr, token: tok}
}
