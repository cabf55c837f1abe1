package creds_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/creds"
)

func TestStaticFromDSN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		dsn      string
		user     string
		password string
		err      error
	}{
		{name: "user and password", dsn: "postgres://app:s3cr%40t@db:5432/shop?sslmode=disable", user: "app", password: "s3cr@t"},
		{name: "user only", dsn: "postgres://postgres@127.0.0.1:5432/postgres", user: "postgres"},
		{name: "mysql scheme", dsn: "mysql://root:pw@127.0.0.1:3306/shop", user: "root", password: "pw"},
		{name: "no user", dsn: "postgres://127.0.0.1:5432/postgres", err: creds.ErrNoUser},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := creds.StaticFromDSN(tt.dsn)
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.user, s.User)
			assert.Equal(t, tt.password, s.Password.Reveal())
		})
	}
}

func TestStaticFromDSNErrorHidesPassword(t *testing.T) {
	t.Parallel()
	_, err := creds.StaticFromDSN("postgres://u:hunter2@[::1")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "hunter2")
}

func TestStaticAcquire(t *testing.T) {
	t.Parallel()
	s := &creds.Static{User: "app", Password: creds.NewSecret("hunter2")}
	l, err := s.Acquire(context.Background(), creds.Request{Agent: "a", Role: "r"})
	require.NoError(t, err)
	assert.Equal(t, "app", l.User)
	assert.Equal(t, "hunter2", l.Password.Reveal())
	assert.Nil(t, l.Done)
	assert.NotContains(t, fmt.Sprintf("%v %+v %#v", l, l, l), "hunter2")
	l.Release()
	l.Release()
	require.NoError(t, s.Close())

	_, err = (&creds.Static{}).Acquire(context.Background(), creds.Request{})
	assert.True(t, errors.Is(err, creds.ErrUnavailable))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Acquire(ctx, creds.Request{})
	assert.ErrorIs(t, err, context.Canceled)
}
