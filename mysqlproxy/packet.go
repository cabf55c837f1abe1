package mysqlproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/keyholedb/keyhole/internal/membudget"
)

// MySQL packets: a 3-byte little-endian payload length, a 1-byte sequence
// id, then the payload. A payload of 2^24-1 bytes or more is split into
// packets of exactly maxPayload bytes followed by a shorter one (possibly
// empty), with consecutive sequence ids.
const (
	maxPayload = 1<<24 - 1
	headerLen  = 4

	readBufSize = 16 << 10
	// A read buffer grown for one large packet is dropped once drained.
	maxKeptReadBuf = 256 << 10
	// maxKeptBig bounds the buffer a client reader keeps, between
	// commands, for payloads that do not fit its read buffer; a larger one
	// is dropped when the command is done and its budget returned.
	maxKeptBig = 64 << 10
	// maxKeptWriteBuf bounds a write buffer kept between flushes.
	maxKeptWriteBuf = 64 << 10
	// flushAt is the buffered size past which a direction writes without
	// waiting for the end of the response.
	flushAt = 32 << 10
)

// packetTooLargeError: a client announced more than the limit allows.
type packetTooLargeError struct{ size, limit int }

func (e *packetTooLargeError) Error() string {
	return fmt.Sprintf("packet of %d bytes or more exceeds the limit of %d", e.size, e.limit)
}

// errMalformed marks a packet that does not decode.
var errMalformed = errors.New("malformed packet")

func malformed(what string) error { return fmt.Errorf("%w: %s", errMalformed, what) }

// reader reads packets from a socket into one reused buffer. The bytes
// returned are valid until the next call.
type reader struct {
	r      io.Reader
	buf    []byte
	rp, wp int // unread bytes are buf[rp:wp]
	big    []byte

	// A client reader once the agent is authenticated: a payload larger
	// than maxKeptBig is reserved from the server's budget before its
	// bytes are gathered (a split payload, whose total is not announced,
	// reserves the limit), and returned by release when the command is
	// done.
	budget   *membudget.Budget
	reserved int64
	wait     time.Duration
	done     <-chan struct{} // ends a wait for budget (the connection stopped)
	// reserving is called before a payload takes budget (wait: it has to
	// wait for it).
	reserving func(bytes int64, wait bool)
}

func newReader(r io.Reader, size int) *reader {
	return &reader{r: r, buf: make([]byte, size)}
}

func (b *reader) buffered() int { return b.wp - b.rp }

// fill makes at least n unread bytes available; n must be at most what
// the caller decided to accept, so a peer's announced length is never
// allocated before its bytes arrive beyond the buffer it already has.
func (b *reader) fill(n int) error {
	if b.wp-b.rp >= n {
		return nil
	}
	b.room(n)
	for b.wp-b.rp < n {
		k, err := b.r.Read(b.buf[b.wp:])
		b.wp += k
		if err != nil {
			if b.wp-b.rp >= n {
				return nil
			}
			if errors.Is(err, io.EOF) {
				if b.wp == b.rp && n > 0 {
					return io.EOF
				}
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// room makes the buffer hold n unread bytes from rp, moving what is
// unread to its start or into a larger buffer.
func (b *reader) room(n int) {
	if b.rp+n <= len(b.buf) {
		return
	}
	if n > len(b.buf) {
		nb := make([]byte, max(n, 2*len(b.buf)))
		b.wp = copy(nb, b.buf[b.rp:b.wp])
		b.buf = nb
	} else {
		b.wp = copy(b.buf, b.buf[b.rp:b.wp])
	}
	b.rp = 0
}

// header reads the next packet header without consuming the payload.
func (b *reader) header() (n int, seq byte, err error) {
	if b.rp == b.wp && len(b.buf) > maxKeptReadBuf {
		b.buf, b.rp, b.wp = make([]byte, readBufSize), 0, 0
	}
	if err := b.fill(headerLen); err != nil {
		return 0, 0, err
	}
	h := b.buf[b.rp:]
	return int(h[0]) | int(h[1])<<8 | int(h[2])<<16, h[3], nil
}

// readPayload reads one whole logical payload (joining split packets),
// refusing more than limit bytes in total. It returns the payload and the
// sequence id of its last packet. Bytes are read as they arrive: a client
// that announces 16 MB and sends 3 bytes holds no more than the buffer it
// already had.
func (b *reader) readPayload(limit int) (payload []byte, seq byte, err error) {
	n, seq, err := b.header()
	if err != nil {
		return nil, 0, err
	}
	if n > limit {
		return nil, seq, &packetTooLargeError{size: n, limit: limit}
	}
	if n < maxPayload && headerLen+n <= len(b.buf) {
		if err := b.fill(headerLen + n); err != nil {
			return nil, seq, err
		}
		p := b.buf[b.rp+headerLen : b.rp+headerLen+n]
		b.rp += headerLen + n
		return p, seq, nil
	}
	// Large or split: gather into big, growing only as bytes arrive and
	// never past what the payload may need.
	need := n
	if n >= maxPayload {
		need = limit
	}
	if err := b.reserve(need); err != nil {
		return nil, seq, err
	}
	big := b.big[:0]
	for {
		b.rp += headerLen
		remaining := n
		for remaining > 0 {
			if b.rp == b.wp {
				if err := b.fill(1); err != nil {
					return nil, seq, unexpected(err)
				}
			}
			k := min(remaining, b.wp-b.rp)
			if len(big)+k > cap(big) {
				big = grow(big, k, need)
			}
			big = append(big, b.buf[b.rp:b.rp+k]...)
			b.rp += k
			remaining -= k
		}
		if n < maxPayload {
			break
		}
		var next byte
		n, next, err = b.header()
		if err != nil {
			return nil, seq, unexpected(err)
		}
		if next != seq+1 {
			return nil, seq, malformed("packet out of order")
		}
		seq = next
		if len(big)+n > limit {
			return nil, seq, &packetTooLargeError{size: len(big) + n, limit: limit}
		}
	}
	b.big = big // until release, or the next payload
	return big, seq, nil
}

// grow returns big with room for k more bytes: doubled, at least 4 KiB,
// at most need (the payload's reserved size) unless k needs more.
func grow(big []byte, k, need int) []byte {
	c := min(max(2*cap(big), 4<<10), need)
	c = max(c, len(big)+k)
	nb := make([]byte, len(big), c)
	copy(nb, big)
	return nb
}

// reserve takes from the budget what a payload of n bytes may hold, when
// it is more than maxKeptBig and more than already held.
func (b *reader) reserve(n int) error {
	if b.budget == nil || n <= maxKeptBig || int64(n) <= b.reserved {
		return nil
	}
	more := int64(n) - b.reserved
	if b.reserving != nil {
		b.reserving(more, b.budget.Available() < more)
	}
	if err := b.budget.Acquire(more, b.wait, b.done); err != nil {
		return fmt.Errorf("payload of %d bytes: %w", n, err)
	}
	b.reserved = int64(n)
	return nil
}

// release drops a large payload buffer once its command is done and
// returns the reader's budget.
func (b *reader) release() {
	if cap(b.big) > maxKeptBig {
		b.big = nil
	}
	if b.reserved > 0 {
		b.budget.Release(b.reserved)
		b.reserved = 0
	}
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendPacket frames payload as packets starting at seq, splitting at
// maxPayload, and returns the next sequence id.
func appendPacket(dst []byte, seq byte, payload []byte) ([]byte, byte) {
	for {
		n := min(len(payload), maxPayload)
		dst = append(dst, byte(n), byte(n>>8), byte(n>>16), seq)
		dst = append(dst, payload[:n]...)
		payload = payload[n:]
		seq++
		if n < maxPayload {
			return dst, seq
		}
	}
}

// writePacket writes payload as packets starting at seq without copying
// it into one buffer first (a command may be as large as the client's
// max packet size), and returns the next sequence id.
func writePacket(w io.Writer, seq byte, payload []byte) (byte, error) {
	packets := len(payload)/maxPayload + 1
	bufs := make(net.Buffers, 0, 2*packets)
	hdrs := make([]byte, 0, headerLen*packets)
	for {
		n := min(len(payload), maxPayload)
		hdrs = append(hdrs, byte(n), byte(n>>8), byte(n>>16), seq)
		bufs = append(bufs, hdrs[len(hdrs)-headerLen:len(hdrs):len(hdrs)], payload[:n])
		payload = payload[n:]
		seq++
		if n < maxPayload {
			break
		}
	}
	_, err := bufs.WriteTo(w)
	return seq, err
}

// --- field decoding (protocol::LengthEncodedInteger and friends) ---

// lenenc reads a length-encoded integer at p[i:].
func lenenc(p []byte, i int) (v uint64, next int, ok bool) {
	if i >= len(p) {
		return 0, i, false
	}
	switch c := p[i]; {
	case c < 0xfb:
		return uint64(c), i + 1, true
	case c == 0xfc:
		if i+3 > len(p) {
			return 0, i, false
		}
		return uint64(binary.LittleEndian.Uint16(p[i+1:])), i + 3, true
	case c == 0xfd:
		if i+4 > len(p) {
			return 0, i, false
		}
		return uint64(p[i+1]) | uint64(p[i+2])<<8 | uint64(p[i+3])<<16, i + 4, true
	case c == 0xfe:
		if i+9 > len(p) {
			return 0, i, false
		}
		return binary.LittleEndian.Uint64(p[i+1:]), i + 9, true
	}
	// 0xfb is NULL in a row, 0xff an error: neither is a length.
	return 0, i, false
}

// lenencString reads a length-encoded string at p[i:].
func lenencString(p []byte, i int) (s []byte, next int, ok bool) {
	n, j, ok := lenenc(p, i)
	if !ok || n > uint64(len(p)-j) {
		return nil, i, false
	}
	return p[j : j+int(n)], j + int(n), true
}

// nulString reads a NUL-terminated string at p[i:].
func nulString(p []byte, i int) (s []byte, next int, ok bool) {
	for j := i; j < len(p); j++ {
		if p[j] == 0 {
			return p[i:j], j + 1, true
		}
	}
	return nil, i, false
}

func appendLenenc(dst []byte, v uint64) []byte {
	switch {
	case v < 0xfb:
		return append(dst, byte(v))
	case v <= 0xffff:
		return append(dst, 0xfc, byte(v), byte(v>>8))
	case v <= 0xffffff:
		return append(dst, 0xfd, byte(v), byte(v>>8), byte(v>>16))
	}
	dst = append(dst, 0xfe)
	return binary.LittleEndian.AppendUint64(dst, v)
}

func appendLenencString(dst []byte, s string) []byte {
	return append(appendLenenc(dst, uint64(len(s))), s...)
}

// okInfo is what keyhole reads from an OK packet (or EOF packet): the
// server status flags and, with CLIENT_SESSION_TRACK, a schema change.
type okInfo struct {
	status uint16
	schema string // new current database, when the OK reports one
	hasDB  bool
}

// parseOK decodes an OK packet (header 0x00, or 0xfe when it ends a result
// set under CLIENT_DEPRECATE_EOF) or a 4.1 EOF packet.
func parseOK(p []byte, caps uint32) (okInfo, bool) {
	var info okInfo
	if len(p) == 0 {
		return info, false
	}
	if p[0] == 0xfe && len(p) == 5 {
		// A 4.1 EOF packet: 0xfe, warnings(2), status(2). An OK packet is
		// at least 7 bytes (header, two lenencs, status, warnings).
		info.status = binary.LittleEndian.Uint16(p[3:])
		return info, true
	}
	_, i, ok := lenenc(p, 1) // affected rows
	if !ok {
		return info, false
	}
	if _, i, ok = lenenc(p, i); !ok { // last insert id
		return info, false
	}
	if i+4 > len(p) {
		return info, false
	}
	info.status = binary.LittleEndian.Uint16(p[i:])
	i += 4 // status, warnings
	if caps&clientSessionTrack == 0 || i >= len(p) {
		return info, true
	}
	if _, i, ok = lenencString(p, i); !ok { // info
		return info, true
	}
	if info.status&serverSessionStateChanged == 0 {
		return info, true
	}
	state, _, ok := lenencString(p, i)
	if !ok {
		return info, true
	}
	for j := 0; j < len(state); {
		typ := state[j]
		data, next, ok := lenencString(state, j+1)
		if !ok {
			break
		}
		if typ == sessionTrackSchema {
			if name, _, ok := lenencString(data, 0); ok {
				info.schema, info.hasDB = string(name), true
			}
		}
		j = next
	}
	return info, true
}
