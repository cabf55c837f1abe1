package identity_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/identity"
)

// fakeSCRAMServer accepts one connection and runs the Postgres SASL
// exchange (protocol docs §55.3.1) with conv, then reports the outcome.
func fakeSCRAMServer(t *testing.T, auth *identity.Auth) (addr string, result <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	res := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			res <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		res <- serveSCRAM(pgproto3.NewBackend(conn, conn), auth)
	}()
	return ln.Addr().String(), res
}

func serveSCRAM(be *pgproto3.Backend, auth *identity.Auth) error {
	msg, err := be.ReceiveStartupMessage()
	if err != nil {
		return err
	}
	sm, ok := msg.(*pgproto3.StartupMessage)
	if !ok {
		return errors.New("expected startup message")
	}
	conv, ok := auth.SCRAM(sm.Parameters["user"])
	if !ok {
		return errors.New("no verifier")
	}
	fail := func(err error) error {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: "password authentication failed"})
		_ = be.Flush()
		return err
	}
	be.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}})
	if err := be.Flush(); err != nil {
		return err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
		return err
	}
	msg, err = be.Receive()
	if err != nil {
		return err
	}
	init, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok {
		return errors.New("expected SASLInitialResponse")
	}
	reply, _, err := conv.Step(init.Data)
	if err != nil {
		return fail(err)
	}
	be.Send(&pgproto3.AuthenticationSASLContinue{Data: reply})
	if err := be.Flush(); err != nil {
		return err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASLContinue); err != nil {
		return err
	}
	msg, err = be.Receive()
	if err != nil {
		return err
	}
	resp, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		return errors.New("expected SASLResponse")
	}
	reply, done, err := conv.Step(resp.Data)
	if err != nil {
		return fail(err)
	}
	if !done || conv.Agent() == nil {
		return fail(errors.New("conversation not done"))
	}
	be.Send(&pgproto3.AuthenticationSASLFinal{Data: reply})
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := be.Flush(); err != nil {
		return err
	}
	// Wait for the client's Terminate.
	_, _ = be.Receive()
	return nil
}

// TestSCRAMWithPgx runs pgx's SCRAM client (which checks the server
// signature) against the server conversation.
func TestSCRAMWithPgx(t *testing.T) {
	t.Parallel()
	secret := identity.NewSecret()
	v, err := identity.NewVerifier(secret, 4096)
	require.NoError(t, err)
	auth, err := identity.New(identity.Config{SCRAM: identity.SCRAMConfig{Verifiers: map[string]string{"sales": v.Encode()}}})
	require.NoError(t, err)

	for _, tt := range []struct {
		name     string
		password string
		ok       bool
	}{
		{name: "right secret", password: secret, ok: true},
		{name: "wrong secret", password: "not-" + secret},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr, result := fakeSCRAMServer(t, auth)
			host, port, err := net.SplitHostPort(addr)
			require.NoError(t, err)
			cfg, err := pgconn.ParseConfig("host=" + host + " port=" + port + " user=sales dbname=shop sslmode=disable")
			require.NoError(t, err)
			cfg.Password = tt.password
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := pgconn.ConnectConfig(ctx, cfg)
			if tt.ok {
				require.NoError(t, err)
				require.NoError(t, conn.Close(ctx))
				require.NoError(t, <-result)
				return
			}
			var pgErr *pgconn.PgError
			require.ErrorAs(t, err, &pgErr)
			assert.Equal(t, "28P01", pgErr.Code)
			srvErr := <-result
			require.ErrorIs(t, srvErr, identity.ErrAuthFailed)
			assert.NotContains(t, srvErr.Error(), tt.password)
		})
	}
}
