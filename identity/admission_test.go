package identity_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/identity"
)

// gateConn is a connection counted by a gate in the tests: evicted records
// that the gate dropped it.
type gateConn struct {
	login   *identity.Login
	evicted bool
}

func admit(g *identity.LoginGate, source string) *gateConn {
	c := &gateConn{}
	c.login = g.Admit(source, func() { c.evicted = true })
	return c
}

func TestLoginGateDropsFromTheBiggestSource(t *testing.T) {
	g := identity.NewLoginGate(4)
	agent := admit(g, "10.0.0.1:5000")
	var flood []*gateConn
	for i := range 3 {
		flood = append(flood, admit(g, fmt.Sprintf("10.0.0.9:%d", 6000+i)))
	}
	require.Equal(t, 4, g.InFlight())
	// Full: every newcomer from the flooding source drops that source's
	// oldest, never the agent's login.
	for i := range 10 {
		flood = append(flood, admit(g, fmt.Sprintf("10.0.0.9:%d", 7000+i)))
		assert.Equal(t, 4, g.InFlight())
	}
	assert.False(t, agent.evicted, "the agent's login is not the flood's to drop")
	for i, c := range flood {
		assert.Equal(t, i < 10, c.evicted, "flood connection %d: oldest dropped first", i)
	}
	assert.True(t, agent.login.Done(), "the agent's login was still counted")
	assert.False(t, agent.login.Done(), "a second Done is a no-op")
	assert.Equal(t, 3, g.InFlight())
	// A dropped connection's Done says so and counts nothing.
	assert.False(t, flood[0].login.Done())
	assert.Equal(t, 3, g.InFlight())
}

func TestLoginGateTiesGoToTheOldest(t *testing.T) {
	g := identity.NewLoginGate(3)
	a := admit(g, "192.0.2.1")
	b := admit(g, "192.0.2.2")
	c := admit(g, "192.0.2.3")
	d := admit(g, "192.0.2.4") // one each: the oldest of all goes
	assert.True(t, a.evicted)
	assert.False(t, b.evicted || c.evicted || d.evicted)
	e := admit(g, "192.0.2.4") // still one each when it comes: b goes
	assert.True(t, b.evicted)
	// Two from one source outweigh one from another, even an older one.
	f := admit(g, "192.0.2.5")
	assert.False(t, c.evicted, "c is older but its source holds one")
	assert.True(t, d.evicted, "d's source held two")
	assert.False(t, e.evicted || f.evicted)
}

func TestLoginGateCountsIPv6PerSlash64(t *testing.T) {
	g := identity.NewLoginGate(3)
	agent := admit(g, "[2001:db8:1::1]:5432")
	x := admit(g, "[2001:db8:2::1]:5432")
	y := admit(g, "[2001:db8:2::ffff]:5432") // same /64 as x
	admit(g, "[2001:db8:2::2]:5432")
	assert.True(t, x.evicted, "x's /64 holds the most")
	assert.False(t, agent.evicted || y.evicted)
}

func TestLoginGateConcurrent(t *testing.T) {
	g := identity.NewLoginGate(8)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				l := g.Admit(fmt.Sprintf("10.1.%d.%d", w, i%5), func() {})
				if i%3 != 0 {
					l.Done()
				} else {
					defer l.Done()
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 0, g.InFlight())
}

func TestSessionsBoundAllAndPerAgent(t *testing.T) {
	s := identity.NewSessions(4, 2)
	assert.Equal(t, identity.SessionCounted, s.Take("a"))
	assert.Equal(t, identity.SessionCounted, s.Take("a"))
	assert.Equal(t, identity.TooManyAgentSessions, s.Take("a"), "a has its two")
	assert.Equal(t, identity.SessionCounted, s.Take("b"))
	assert.Equal(t, identity.SessionCounted, s.Take("c"))
	assert.Equal(t, identity.TooManySessions, s.Take("d"), "four in all")
	s.Release("a")
	assert.Equal(t, identity.SessionCounted, s.Take("d"), "a's release made room")
	assert.Equal(t, identity.TooManySessions, s.Take("a"))

	unbounded := identity.NewSessions(3, 0)
	for range 3 {
		assert.Equal(t, identity.SessionCounted, unbounded.Take("a"), "no bound per agent")
	}
	assert.Equal(t, identity.TooManySessions, unbounded.Take("a"))
}
