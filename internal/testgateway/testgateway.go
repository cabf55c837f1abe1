// Package testgateway runs a keyhole gateway in process for the proxies'
// tests, which build keyhole through the gateway library as keyhole serve
// does.
package testgateway

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/gateway"
)

// Run builds a gateway from cfg and opts and runs it until the test ends;
// it returns the gateway and the address of dialect's front end.
func Run(t testing.TB, cfg *config.Config, opts gateway.Options, dialect string) (*gateway.Gateway, string) {
	t.Helper()
	g, err := gateway.New(cfg, opts)
	require.NoError(t, err)
	ran := make(chan error, 1)
	go func() { ran <- g.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// A test that ended the gateway itself saw its error.
		_ = g.Shutdown(ctx)
		select {
		case <-ran:
		case <-ctx.Done():
			t.Errorf("the gateway did not stop within 5s")
		}
	})
	addr := g.Addr(dialect)
	require.NotNil(t, addr, "no %s front end", dialect)
	return g, addr.String()
}
