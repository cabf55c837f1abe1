package mysqlproxy

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzPacketDecoder feeds arbitrary bytes to the packet reader and the
// field decoders that see upstream and client bytes: none may panic, and
// no payload may exceed the limit.
func FuzzPacketDecoder(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 3})
	f.Add([]byte{0xff, 0xff, 0xff, 0, 'a'})
	f.Add(append([]byte{0xff, 0xff, 0xff, 0}, bytes.Repeat([]byte{'x'}, 64)...))
	f.Add([]byte{7, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0})
	f.Add([]byte{5, 0, 0, 5, 0xfe, 0, 0, 2, 0})
	f.Add([]byte{0x0c, 0, 0, 1, 0, 0xfc, 1, 0, 0, 0x02, 0x40, 0, 0, 3, 1, 1})
	f.Add([]byte("\x4a\x00\x00\x00\x0a10.11.19-MariaDB\x00\x01\x00\x00\x00abcdefgh\x00\xfe\xf7\x2d\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00ijklmnopqrst\x00mysql_native_password\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 1 << 10
		rd := newReader(bytes.NewReader(data), 16)
		for range 64 {
			p, _, err := rd.readPayload(limit)
			if err != nil {
				var tooBig *packetTooLargeError
				if !errors.As(err, &tooBig) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, errMalformed) {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			require.LessOrEqual(t, len(p), limit)
			_, _ = parseOK(p, relayCaps)
			_, _ = parseGreeting(p)
			_, _ = columnName(p)
			_ = parseErrPacket(p)
			for i := range min(len(p), 8) {
				_, _, _ = lenencString(p, i)
				_, _, _ = nulString(p, i)
			}
		}
	})
}

func TestPacketRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, maxPayload - 1, maxPayload, maxPayload + 1, 2*maxPayload + 3} {
		payload := bytes.Repeat([]byte{'p'}, n)
		framed, next := appendPacket(nil, 7, payload)
		wantPackets := n/maxPayload + 1
		assert.Equal(t, byte(7+wantPackets), next, "size %d", n)
		rd := newReader(bytes.NewReader(framed), readBufSize)
		got, seq, err := rd.readPayload(1 << 26)
		require.NoError(t, err)
		assert.Equal(t, n, len(got))
		assert.Equal(t, next-1, seq)
	}
	// A split payload over the limit is refused before its second packet.
	framed, _ := appendPacket(nil, 0, bytes.Repeat([]byte{'p'}, maxPayload+10))
	_, _, err := newReader(bytes.NewReader(framed), readBufSize).readPayload(maxPayload + 5)
	var tooBig *packetTooLargeError
	require.ErrorAs(t, err, &tooBig)
}

func TestParseOK(t *testing.T) {
	// OK with session state: schema changed to "shop".
	state := []byte{1, 5, 4, 's', 'h', 'o', 'p'}
	p := []byte{0x00, 0, 0, 0x02 | 0x08, 0x40, 0, 0, 0}
	p = append(p, byte(len(state)))
	p = append(p, state...)
	info, ok := parseOK(p, relayCaps)
	require.True(t, ok)
	assert.Equal(t, uint16(0x4000|0x0002|0x0008), info.status)
	assert.True(t, info.hasDB)
	assert.Equal(t, "shop", info.schema)
	// EOF packet.
	info, ok = parseOK([]byte{0xfe, 0, 0, 0x01, 0x00}, relayCaps)
	require.True(t, ok)
	assert.Equal(t, uint16(1), info.status)
}
