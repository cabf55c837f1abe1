package pgproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"testing/iotest"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var wireCases = []pgproto3.FrontendMessage{
	&pgproto3.Query{String: "SELECT 1"},
	&pgproto3.Parse{Name: "s", Query: "SELECT $1::int", ParameterOIDs: []uint32{23}},
	&pgproto3.Parse{Query: "SELECT 1"},
	&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s", ParameterFormatCodes: []int16{1},
		Parameters: [][]byte{[]byte("abc"), nil, {}}, ResultFormatCodes: []int16{0, 1}},
	&pgproto3.Bind{},
	&pgproto3.Execute{Portal: "p", MaxRows: 7},
	&pgproto3.Describe{ObjectType: 'S', Name: "s"},
	&pgproto3.Close{ObjectType: 'P', Name: "p"},
	&pgproto3.Sync{},
	&pgproto3.Flush{},
	&pgproto3.CopyData{Data: []byte("1\tx\n")},
	&pgproto3.CopyDone{},
	&pgproto3.CopyFail{Message: "no"},
}

// A message is forwarded as received when that is how pgproto3 encodes
// what keyhole decoded, and re-encoded when it carries bytes keyhole did
// not decode.
func TestForwardIsCanonical(t *testing.T) {
	for _, m := range wireCases {
		enc, err := m.Encode(nil)
		require.NoError(t, err)
		var stream []byte
		stream = append(stream, enc...)
		// The same message with trailing bytes in its body.
		bad := append(append([]byte(nil), enc...), 0xde, 0xad)
		bad[1], bad[2], bad[3], bad[4] = 0, 0, 0, byte(len(bad)-1)
		stream = append(stream, bad...)

		r := newMsgReader(iotest.OneByteReader(bytes.NewReader(stream)), 0)
		var fm frontendMsgs
		c := &conn{}
		for i := range 2 {
			typ, raw, err := r.next()
			require.NoError(t, err)
			msg, err := fm.decode(typ, raw[5:], pgproto3.AuthTypeOk)
			if i == 1 && err != nil {
				continue // strict decoders refuse trailing bytes
			}
			require.NoError(t, err, "%T", m)
			want, err := msg.Encode(nil)
			require.NoError(t, err)
			c.upBuf = c.upBuf[:0]
			require.NoError(t, c.forward(msg, raw))
			assert.Equal(t, want, c.upBuf, "%T #%d", m, i)
			if _, ok := bodyLen(msg); ok {
				assert.Equal(t, enc, c.upBuf, "%T #%d", m, i)
			}
		}
		_, _, err = r.next()
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	}
}

func TestMsgReader(t *testing.T) {
	big := &pgproto3.Query{String: string(bytes.Repeat([]byte("x"), 3*readBufSize))}
	var stream []byte
	for _, m := range append(wireCases, big, &pgproto3.Sync{}) {
		stream, _ = m.Encode(stream)
	}
	r := newMsgReader(bytes.NewReader(stream), 0)
	var got []byte
	for {
		_, raw, err := r.next()
		if errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		require.NoError(t, err)
		got = append(got, raw...)
	}
	assert.Equal(t, stream, got)

	r = newMsgReader(bytes.NewReader(stream), 8)
	_, _, err := r.next()
	var tooBig *pgproto3.ExceededMaxBodyLenErr
	require.ErrorAs(t, err, &tooBig)
	assert.Equal(t, 8, tooBig.MaxExpectedBodyLen)

	r = newMsgReader(bytes.NewReader([]byte{'Q', 0, 0, 0, 3}), 0)
	_, _, err = r.next()
	assert.Error(t, err)
}

// checkScanners fails when a scanner accepts a body pgproto3 would decode
// differently: it must take only bodies Decode accepts, read to their last
// byte (bodyLen, or Describe's and Close's exact form), with the same names.
func checkScanners(t *testing.T, typ byte, body []byte) {
	t.Helper()
	var fm frontendMsgs
	switch typ {
	case 'B':
		portal, stmt, ok := scanBind(body)
		msg, err := fm.decode('B', body, pgproto3.AuthTypeOk)
		if !ok {
			return
		}
		require.NoError(t, err, "scanBind took %x", body)
		m := msg.(*pgproto3.Bind)
		n, _ := bodyLen(m)
		assert.Equal(t, len(body), n, "scanBind took %x with trailing bytes", body)
		assert.Equal(t, m.DestinationPortal, string(portal))
		assert.Equal(t, m.PreparedStatement, string(stmt))
	case 'D', 'C':
		objType, name, ok := scanNamed(body)
		msg, err := fm.decode(typ, body, pgproto3.AuthTypeOk)
		if !ok {
			// Both decoders take exactly the same bodies.
			assert.Error(t, err, "scanNamed refused %x", body)
			return
		}
		require.NoError(t, err, "scanNamed took %x", body)
		enc, err := msg.Encode(nil)
		require.NoError(t, err)
		assert.Equal(t, body, enc[5:])
		assert.Equal(t, enc[5], objType)
		assert.Equal(t, string(enc[6:len(enc)-1]), string(name))
	case 'E':
		portal, ok := scanExecute(body)
		msg, err := fm.decode('E', body, pgproto3.AuthTypeOk)
		if !ok {
			return
		}
		require.NoError(t, err, "scanExecute took %x", body)
		m := msg.(*pgproto3.Execute)
		n, _ := bodyLen(m)
		assert.Equal(t, len(body), n, "scanExecute took %x with trailing bytes", body)
		assert.Equal(t, m.Portal, string(portal))
	}
}

// The scanners of passMessage agree with pgproto3 on every well-formed
// message of wireCases, which they all take.
func TestScannersAgree(t *testing.T) {
	for _, m := range wireCases {
		enc, err := m.Encode(nil)
		require.NoError(t, err)
		checkScanners(t, enc[0], enc[5:])
		switch enc[0] {
		case 'B':
			_, _, ok := scanBind(enc[5:])
			assert.True(t, ok)
		case 'D', 'C':
			_, _, ok := scanNamed(enc[5:])
			assert.True(t, ok)
		case 'E':
			_, ok := scanExecute(enc[5:])
			assert.True(t, ok)
		}
		// Truncated at every length and with bytes after the last field.
		for i := range len(enc) - 5 {
			checkScanners(t, enc[0], enc[5:5+i])
		}
		checkScanners(t, enc[0], append(enc[5:len(enc):len(enc)], 0, 0))
	}
}

func FuzzScanners(f *testing.F) {
	for _, m := range wireCases {
		enc, err := m.Encode(nil)
		require.NoError(f, err)
		f.Add(enc[0], enc[5:])
	}
	f.Fuzz(checkScanners)
}

// writeBeforeRead: the next read writes the request, then waits for the
// answer; on a socket whose peer is gone the write's error is the read's.
func TestWriteBeforeRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	peer := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			peer <- c
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer nc.Close()
	srv := <-peer
	defer srv.Close()

	r := newMsgReader(nc, 0)
	req, _ := (&pgproto3.Sync{}).Encode(nil)
	require.True(t, r.writeBeforeRead(req, nc))
	go func() {
		// The answer comes only once the request has arrived.
		got := make([]byte, len(req))
		if _, err := io.ReadFull(srv, got); err == nil && bytes.Equal(got, req) {
			_, _ = srv.Write([]byte{'Z', 0, 0, 0, 5, 'I', 'C', 0, 0, 0, 4})
		}
	}()
	typ, raw, err := r.next()
	require.NoError(t, err)
	assert.Equal(t, byte('Z'), typ)
	assert.Equal(t, []byte{'Z', 0, 0, 0, 5, 'I'}, raw)
	assert.Nil(t, r.pre)
	// A message still buffered: the request is not taken.
	assert.False(t, r.writeBeforeRead(req, nc))
	_, _, err = r.next()
	require.NoError(t, err)

	// The peer resets the connection: the write (or the read) fails.
	require.NoError(t, srv.(*net.TCPConn).SetLinger(0))
	require.NoError(t, srv.Close())
	require.True(t, r.writeBeforeRead(req, nc))
	_, _, err = r.next()
	require.Error(t, err)
	assert.Nil(t, r.pre)
}
