package mysqlproxy

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/membudget"
)

// Stand-ins for what New only checks is set.
type (
	nopAuth  struct{ identity.Authenticator }
	nopCreds struct{ creds.Source }
)

func TestLimitDefaults(t *testing.T) {
	l := Limits{}.withDefaults()
	assert.Equal(t, config.DefaultIdleTimeout, l.IdleTimeout, "an idle session does not live for ever by default")
	assert.Equal(t, 64<<20, l.MaxPacketSize)
	assert.EqualValues(t, 256<<20, l.BufferMemory)
	assert.Zero(t, Limits{IdleTimeout: -1}.withDefaults().IdleTimeout, "negative: never")
	_, err := New(Config{Decider: settingsDecider{}, Auth: nopAuth{}, Creds: nopCreds{}, Upstreams: map[string]Upstream{"": {Addr: "127.0.0.1:1"}},
		Limits: Limits{MaxPacketSize: 2 << 20, BufferMemory: 1 << 20}})
	assert.ErrorContains(t, err, "BufferMemory")
}

// TestReaderBudget: a payload larger than maxKeptBig reserves its size (a
// split payload, whose total is unknown, the limit) before its bytes are
// read, grows its buffer only as far as that, and release returns both.
func TestReaderBudget(t *testing.T) {
	b := membudget.New(100 << 20)
	var stream []byte
	big := bytes.Repeat([]byte("a"), 300<<10)
	stream, _ = appendPacket(stream, 0, big)
	split := bytes.Repeat([]byte("b"), maxPayload+10)
	stream, _ = appendPacket(stream, 0, split)
	rd := newReader(bytes.NewReader(stream), readBufSize)
	rd.budget, rd.wait = b, time.Second

	p, seq, err := rd.readPayload(32 << 20)
	require.NoError(t, err)
	assert.Equal(t, big, p)
	assert.Zero(t, seq)
	assert.EqualValues(t, 100<<20-300<<10, b.Available())
	assert.LessOrEqual(t, cap(p), 300<<10, "grown no further than announced")
	rd.release()
	assert.EqualValues(t, 100<<20, b.Available())
	assert.Nil(t, rd.big, "a large buffer is not kept")

	p, seq, err = rd.readPayload(32 << 20)
	require.NoError(t, err)
	assert.Equal(t, len(split), len(p))
	assert.EqualValues(t, 1, seq)
	assert.EqualValues(t, 100<<20-32<<20, b.Available(), "a split payload reserves the limit")
	rd.release()
	assert.EqualValues(t, 100<<20, b.Available())

	// No room within the wait: the read fails, nothing is held.
	small := membudget.New(1 << 20)
	stream, _ = appendPacket(nil, 0, bytes.Repeat([]byte("c"), 2<<20))
	rd = newReader(bytes.NewReader(stream), readBufSize)
	rd.budget, rd.wait = small, time.Millisecond
	_, _, err = rd.readPayload(32 << 20)
	assert.ErrorIs(t, err, membudget.ErrNoMemory)
	assert.EqualValues(t, 1<<20, small.Available())
}
