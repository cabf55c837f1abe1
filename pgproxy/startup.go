package pgproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Phase 1: the startup packet and its variants, before anything is
// authenticated.

// Startup packet codes (protocol.sgml).
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	// maxStartupPacket is Postgres's own limit (MAX_STARTUP_PACKET_LENGTH).
	maxStartupPacket = 10000
	// maxAuthMessage bounds a client message before authentication: an
	// agent token is at most 16 KiB (identity) and SCRAM messages are far
	// smaller. Postgres allows 64 KiB (PG_MAX_AUTH_TOKEN_LENGTH) for
	// secrets of its own kinds.
	maxAuthMessage = 32 << 10
)

// readStartupPacket reads one length-prefixed startup packet straight from
// the socket, so no bytes past it are buffered when TLS starts.
func (c *conn) readStartupPacket() (code uint32, body []byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c.client, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("read startup packet: %w", errClientGone)
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[:])))
	if n < 8 || n > maxStartupPacket {
		return 0, nil, fatal(codeProtocolViolation, "invalid length of startup packet", fmt.Errorf("length %d", n))
	}
	body = make([]byte, n-4)
	if _, err := io.ReadFull(c.client, body); err != nil {
		return 0, nil, fatal(codeProtocolViolation, "incomplete startup packet", err)
	}
	return binary.BigEndian.Uint32(body), body, nil
}

func (c *conn) startup(ctx context.Context) error {
	triedTLS, triedGSS := false, false
	for {
		code, body, err := c.readStartupPacket()
		if err != nil {
			return err
		}
		switch {
		case code == sslRequestCode && len(body) == 4 && !triedTLS:
			triedTLS = true
			if c.srv.cfg.TLS == nil {
				if _, err := c.client.Write([]byte{'N'}); err != nil {
					return fmt.Errorf("answer SSLRequest: %w", errClientGone)
				}
				continue
			}
			if _, err := c.client.Write([]byte{'S'}); err != nil {
				return fmt.Errorf("answer SSLRequest: %w", errClientGone)
			}
			tc := tls.Server(c.client, c.srv.cfg.TLS)
			if err := tc.HandshakeContext(ctx); err != nil {
				return fmt.Errorf("tls handshake: %w", errors.Join(errClientGone, err))
			}
			c.mu.Lock()
			c.client = tc
			c.mu.Unlock()
			c.isTLS = true
		case code == gssEncRequestCode && len(body) == 4 && !triedGSS:
			triedGSS = true
			if _, err := c.client.Write([]byte{'N'}); err != nil {
				return fmt.Errorf("answer GSSENCRequest: %w", errClientGone)
			}
		case code == cancelRequestCode:
			var cr pgproto3.CancelRequest
			if err := cr.Decode(body); err != nil {
				return fmt.Errorf("cancel request: %w", errClientGone)
			}
			c.srv.cancelRequest(cr.ProcessID, cr.SecretKey, c.log)
			return fmt.Errorf("cancel request handled: %w", errClientGone)
		case code>>16 == 3:
			return c.startupMessage(code, body)
		default:
			return fatal(codeProtocolViolation, fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0", code>>16, code&0xffff), nil)
		}
	}
}

// passedParams are client startup parameters passed to the upstream.
// Anything that changes how text is lexed or names resolve (options,
// search_path, client_encoding other than UTF8) is not.
var passedParams = map[string]bool{
	"datestyle": true, "extra_float_digits": true, "timezone": true, "intervalstyle": true,
}

func (c *conn) startupMessage(code uint32, body []byte) error {
	// Until the agent is authenticated only small messages are legal:
	// run raises the limit to Limits.MaxMessageSize afterwards.
	c.clientRd = newMsgReader(c.client, maxAuthMessage)
	c.clientRd.budget, c.clientRd.wait, c.clientRd.done = c.srv.buffers, bufferWait, c.stopCh
	c.clientRd.active = &c.lastActive
	c.clientRd.reserving = func(n int64, wait bool) {
		if wait {
			c.log.Info("client message waits for buffer memory", "bytes", n)
		} else {
			c.log.Debug("client message reserves buffer memory", "bytes", n)
		}
	}

	// The parameters (any 3.x; keyhole negotiates down to 3.0): name and
	// value pairs, each \0-terminated, then a \0. Read in place: a map of
	// them would be garbage of every session. A name given twice counts
	// with each value, in order.
	var unrecognized []string
	rest := body[4:]
	for {
		k, r, ok := bytes.Cut(rest, []byte{0})
		if !ok {
			return fatal(codeProtocolViolation, "invalid startup packet layout", errors.New("missing terminator"))
		}
		if len(k) == 0 {
			if len(r) != 0 {
				return fatal(codeProtocolViolation, "invalid startup packet layout", errors.New("bytes after the terminator"))
			}
			break
		}
		v, r, ok := bytes.Cut(r, []byte{0})
		if !ok {
			return fatal(codeProtocolViolation, "invalid startup packet layout", errors.New("missing terminator"))
		}
		rest = r
		if err := c.startupParam(string(k), string(v), &unrecognized); err != nil {
			return err
		}
	}
	if c.user == "" {
		return fatal(codeInvalidAuthSpec, "no PostgreSQL user name specified in startup packet", nil)
	}
	if c.database == "" {
		c.database = c.user
	}
	if code != 196608 || len(unrecognized) > 0 {
		slices.Sort(unrecognized)
		c.send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unrecognized})
	}
	return nil
}

// startupParam takes one startup parameter.
func (c *conn) startupParam(k, v string, unrecognized *[]string) error {
	lk := strings.ToLower(k)
	switch {
	case lk == "user":
		c.user = v
	case lk == "database":
		c.database = v
	case lk == "application_name":
		c.appName = v
	case lk == "replication":
		switch strings.ToLower(v) {
		case "", "false", "off", "no", "0":
		default:
			return fatal(codeFeatureUnsupported, "keyhole does not proxy replication connections", nil)
		}
	case lk == "options":
		if strings.TrimSpace(v) != "" {
			return fatal(codeFeatureUnsupported, "keyhole does not accept startup options; set session parameters with SET", nil)
		}
	case lk == "client_encoding":
		if !isUTF8Name(v) {
			return fatal(codeFeatureUnsupported, "keyhole supports only client_encoding UTF8", nil)
		}
	case strings.HasPrefix(lk, "_pq_."):
		*unrecognized = append(*unrecognized, k)
	case passedParams[lk]:
		if c.params == nil {
			c.params = make(map[string]string)
		}
		c.params[k] = v
	default:
		c.log.Debug("startup parameter ignored", "name", k)
	}
	return nil
}

// isUTF8Name reports whether Postgres reads an encoding name as UTF8.
// client_encoding is a name (GUC_IS_NAME): the value is cut to
// NAMEDATALEN-1 (63) bytes first. pg_char_to_encoding
// (src/common/encnames.c) then ignores every byte that is not an ASCII
// letter or digit, folds case, and knows UTF8 as "utf8" and "unicode". So
// 'utf-8' (asyncpg sends the quotes), UTF_8 and Unicode are UTF8.
func isUTF8Name(v string) bool {
	v = v[:min(len(v), 63)]
	var b [63]byte
	n := 0
	for i := 0; i < len(v); i++ {
		switch ch := v[i]; {
		case ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9':
			b[n] = ch
			n++
		case ch >= 'A' && ch <= 'Z':
			b[n] = ch + 'a' - 'A'
			n++
		}
	}
	k := string(b[:n])
	return k == "utf8" || k == "unicode"
}
