package pgproxy

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5" //nolint:gosec // the md5 password method is Postgres's, not a choice
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Phase 4's login: keyhole logs in to the upstream itself, on the socket
// the relay then uses, with one base-size buffer for what it writes and
// the upstream reader's own for what it reads (both back in readBufs
// when the login ends). A login through pgconn left about 16 KiB of
// garbage per session (its read buffer, chunk reader, context watcher,
// timers, maps), which is most of what an idle session's resident memory
// held beyond what it keeps.
//
// What it speaks (protocol.sgml, "Start-up"): SSLRequest then TLS when the
// upstream has a TLS configuration (no fallback to plain TCP), a 3.0
// StartupMessage, and the password methods Postgres offers to a client
// that has a password: cleartext, md5, and SASL SCRAM-SHA-256, with
// tls-server-end-point channel binding (SCRAM-SHA-256-PLUS) when the
// connection is TLS and the server offers it, as libpq and pgconn do by
// default. GSSAPI and SSPI are refused, as pgconn without a GSS provider
// refused them. A SCRAM password that is not ASCII would need SASLprep
// (RFC 4013), which pgconn implements: such a login goes through pgconn
// (loginPgconn).

// SASL mechanisms (Postgres's auth-sasl).
const (
	scramSHA256     = "SCRAM-SHA-256"
	scramSHA256Plus = "SCRAM-SHA-256-PLUS"
	// maxSCRAMIterations bounds the PBKDF2 work an upstream can ask for
	// (pgconn's bound; Postgres's default is 4096).
	maxSCRAMIterations = 10_000_000
)

// Authentication request codes (AuthenticationXXX messages).
const (
	authOK            = 0
	authCleartext     = 3
	authMD5           = 5
	authSASL          = 10
	authSASLContinue  = 11
	authSASLFinal     = 12
	protocolVersion30 = 196608
)

// upLogin is one login's state.
type upLogin struct {
	c    *conn
	w    io.Writer // the upstream socket (the *tls.Conn with TLS)
	tls  *tls.Conn // nil without TLS
	out  []byte    // what is written, from readBufs
	user string
	pw   string
}

// login logs in to the upstream at c.upConn (already dialled, TLS
// included) as user with password, to database db with the startup
// parameters params (name, value pairs). On success c.upRd, c.upPID,
// c.upKey and c.txStatus are set and c.wbuf holds the client's
// AuthenticationOk and the server's ParameterStatus messages; on failure
// c.wbuf is as it was.
func (c *conn) login(w io.Writer, tc *tls.Conn, user, password, db string, params []string) (err error) {
	l := upLogin{c: c, w: w, tls: tc, out: readBufs.get()[:0], user: user, pw: password}
	mark := len(c.clientBuffer())
	defer func() {
		readBufs.put(l.out)
		if err != nil {
			c.wbuf = c.wbuf[:mark]
		}
	}()

	// StartupMessage: length, version, then name\0value\0 pairs and \0.
	b := append(l.out, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, protocolVersion30)
	b = appendCString(appendCString(b, "user"), user)
	b = appendCString(appendCString(b, "database"), db)
	for _, s := range params {
		b = appendCString(b, s)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	l.out = b
	if err := l.flush(); err != nil {
		return fmt.Errorf("write startup message: %w", err)
	}

	rd := c.upRd
	authed := false
	for {
		typ, raw, err := rd.next()
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		body := raw[5:]
		switch typ {
		case 'R':
			if len(body) < 4 {
				return errors.New("malformed authentication message")
			}
			switch code := binary.BigEndian.Uint32(body); code {
			case authOK:
				authed = true
				c.send(&pgproto3.AuthenticationOk{})
			case authCleartext:
				err = l.password(password)
			case authMD5:
				if len(body) != 8 {
					return errors.New("malformed md5 authentication message")
				}
				err = l.password(md5Password(user, password, body[4:8]))
			case authSASL:
				err = l.scram(body[4:])
			default:
				return fmt.Errorf("unsupported authentication method %d", code)
			}
			if err != nil {
				return err
			}
		case 'E':
			return serverError(body)
		case 'S':
			if !authed {
				return errors.New("ParameterStatus before AuthenticationOk")
			}
			name, _, _ := bytes.Cut(body, []byte{0})
			if bytes.EqualFold(name, sessionAuthorization) {
				c.send(&pgproto3.ParameterStatus{Name: string(name), Value: c.user})
			} else {
				c.wbuf = append(c.wbuf, raw...)
			}
		case 'K':
			if len(body) < 8 || len(body) > 4+256 {
				return errors.New("malformed BackendKeyData")
			}
			pid, key := binary.BigEndian.Uint32(body), append([]byte(nil), body[4:]...)
			c.mu.Lock()
			c.upPID, c.upKey = pid, key
			c.mu.Unlock()
		case 'Z':
			if !authed {
				return errors.New("ReadyForQuery before AuthenticationOk")
			}
			if len(body) != 1 {
				return errors.New("malformed ReadyForQuery")
			}
			c.mu.Lock()
			c.txStatus = body[0]
			c.mu.Unlock()
			return nil
		case 'N', 'v':
			// A notice, or NegotiateProtocolVersion (keyhole asks for 3.0
			// and no protocol options, which every server speaks).
		default:
			return fmt.Errorf("unexpected message %q during login", typ)
		}
	}
}

// sessionAuthorization's value, the upstream login (a short-lived
// credential user), is relayed as the name the agent connected as.
var sessionAuthorization = []byte("session_authorization")

func appendCString(b []byte, s string) []byte { return append(append(b, s...), 0) }

// serverError is the error of an ErrorResponse body, as pgconn gives it
// (a *pgconn.PgError, whose text is "FATAL: message (SQLSTATE code)").
func serverError(body []byte) error {
	var m pgproto3.ErrorResponse
	if err := m.Decode(body); err != nil {
		return fmt.Errorf("malformed ErrorResponse: %w", err)
	}
	return fmt.Errorf("server error: %w", pgconn.ErrorResponseToPgError(&m))
}

// md5Password is the md5 method's answer: "md5" followed by
// md5(md5(password || user) || salt) in hex (auth.c).
func md5Password(user, password string, salt []byte) string {
	h := md5.Sum([]byte(password + user)) //nolint:gosec // see import
	var inner [32]byte
	hex.Encode(inner[:], h[:])
	h = md5.Sum(append(inner[:], salt...)) //nolint:gosec // see import
	return "md5" + hex.EncodeToString(h[:])
}

// flush writes l.out.
func (l *upLogin) flush() error {
	_, err := l.w.Write(l.out)
	l.out = l.out[:0]
	return err
}

// password sends a PasswordMessage.
func (l *upLogin) password(pw string) error {
	l.out = appendCString(appendMsgHeader(l.out, 'p'), pw)
	finishMsg(l.out, 0)
	if err := l.flush(); err != nil {
		return fmt.Errorf("write password message: %w", err)
	}
	return nil
}

// appendMsgHeader starts a message: its type and a length finishMsg fills.
func appendMsgHeader(b []byte, typ byte) []byte { return append(b, typ, 0, 0, 0, 0) }

// finishMsg sets the length of the message that starts at b[at].
func finishMsg(b []byte, at int) {
	binary.BigEndian.PutUint32(b[at+1:], uint32(len(b)-at-1))
}

// scram runs a SCRAM-SHA-256 exchange (RFC 5802, RFC 7677; Postgres's
// auth-scram.c) offered with the mechanisms list mechs (names, each
// \0-terminated, then \0). The user name goes in the StartupMessage, so
// the SCRAM one is empty ("n=").
func (l *upLogin) scram(mechs []byte) error {
	var offered, plus bool
	for _, m := range strings.Split(strings.TrimRight(string(mechs), "\x00"), "\x00") {
		offered = offered || m == scramSHA256
		plus = plus || m == scramSHA256Plus
	}
	if !offered {
		return errors.New("failed SASL auth: server does not support SCRAM-SHA-256")
	}
	// GS2 header: "n" without TLS, "y" with TLS but no binding (the server
	// did not offer it), "p=tls-server-end-point" with channel binding.
	mech, gs2 := scramSHA256, "n,,"
	var cbind []byte
	if l.tls != nil {
		gs2 = "y,,"
		if h, err := certificateHash(l.tls); err == nil && plus {
			mech, gs2, cbind = scramSHA256Plus, "p=tls-server-end-point,,", h
		}
	}
	var raw [18]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("failed SASL auth: %w", err)
	}
	nonce := base64.RawStdEncoding.EncodeToString(raw[:])
	clientFirstBare := "n=,r=" + nonce

	// SASLInitialResponse: mechanism, then the client-first-message with
	// its length.
	l.out = appendCString(appendMsgHeader(l.out, 'p'), mech)
	l.out = binary.BigEndian.AppendUint32(l.out, uint32(len(gs2)+len(clientFirstBare)))
	l.out = append(append(l.out, gs2...), clientFirstBare...)
	finishMsg(l.out, 0)
	if err := l.flush(); err != nil {
		return fmt.Errorf("failed SASL auth: %w", err)
	}

	serverFirst, err := l.saslReply(authSASLContinue)
	if err != nil {
		return err
	}
	combined, salt, iters, err := parseServerFirst(serverFirst, nonce)
	if err != nil {
		return fmt.Errorf("failed SASL auth: %w", err)
	}
	salted, err := pbkdf2.Key(sha256.New, l.pw, salt, iters, sha256.Size)
	if err != nil {
		return fmt.Errorf("failed SASL auth: %w", err)
	}
	finalNoProof := "c=" + base64.StdEncoding.EncodeToString(append([]byte(gs2), cbind...)) + ",r=" + combined
	authMessage := []byte(clientFirstBare + "," + serverFirst + "," + finalNoProof)

	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	proof := hmacSHA256(storedKey[:], string(authMessage))
	for i := range proof {
		proof[i] ^= clientKey[i]
	}
	l.out = append(appendMsgHeader(l.out, 'p'), finalNoProof...)
	l.out = append(l.out, ",p="...)
	l.out = base64.StdEncoding.AppendEncode(l.out, proof)
	finishMsg(l.out, 0)
	if err := l.flush(); err != nil {
		return fmt.Errorf("failed SASL auth: %w", err)
	}

	serverFinal, err := l.saslReply(authSASLFinal)
	if err != nil {
		return err
	}
	// server-final-message: "v=" and the server's signature, which proves
	// the server knows the verifier (and, with binding, that no one sits
	// between keyhole and it).
	serverKey := hmacSHA256(salted, "Server Key")
	mac := hmac.New(sha256.New, serverKey)
	mac.Write(authMessage)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	got, ok := strings.CutPrefix(serverFinal, "v=")
	if !ok || !hmac.Equal([]byte(got), []byte(want)) {
		return errors.New("failed SASL auth: invalid SCRAM ServerSignature received from server")
	}
	return nil
}

// saslReply reads the server's next SASL message, of code want; an
// ErrorResponse (a wrong password) is the server's error. The string is
// valid until the next read.
func (l *upLogin) saslReply(want uint32) (string, error) {
	for {
		typ, raw, err := l.c.upRd.next()
		if err != nil {
			return "", fmt.Errorf("failed SASL auth: read: %w", err)
		}
		body := raw[5:]
		switch {
		case typ == 'E':
			return "", serverError(body)
		case typ == 'N':
			continue
		case typ != 'R' || len(body) < 4 || binary.BigEndian.Uint32(body) != want:
			return "", fmt.Errorf("failed SASL auth: unexpected message %q in the SCRAM exchange", typ)
		}
		return string(body[4:]), nil
	}
}

// parseServerFirst reads server-first-message "r=<nonce>,s=<salt>,i=<n>"
// (Postgres sends no extensions); the combined nonce must extend the
// client's.
func parseServerFirst(msg, clientNonce string) (nonce string, salt []byte, iters int, err error) {
	parts := strings.Split(msg, ",")
	if len(parts) < 3 || !strings.HasPrefix(parts[0], "r=") || !strings.HasPrefix(parts[1], "s=") || !strings.HasPrefix(parts[2], "i=") {
		return "", nil, 0, errors.New("invalid SCRAM server-first-message")
	}
	nonce = parts[0][2:]
	if !strings.HasPrefix(nonce, clientNonce) || len(nonce) <= len(clientNonce) {
		return "", nil, 0, errors.New("invalid SCRAM nonce")
	}
	salt, err = base64.StdEncoding.DecodeString(parts[1][2:])
	if err != nil {
		return "", nil, 0, fmt.Errorf("invalid SCRAM salt: %w", err)
	}
	iters, err = strconv.Atoi(parts[2][2:])
	if err != nil || iters <= 0 || iters > maxSCRAMIterations {
		return "", nil, 0, fmt.Errorf("invalid SCRAM iteration count %q", parts[2][2:])
	}
	return nonce, salt, iters, nil
}

func hmacSHA256(key []byte, msg string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(msg))
	return mac.Sum(nil)
}

// certificateHash is the tls-server-end-point channel binding data (RFC
// 5929 section 4.1): the server certificate hashed with its signature's
// hash, SHA-256 for MD5 and SHA-1.
func certificateHash(tc *tls.Conn) ([]byte, error) {
	st := tc.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return nil, errors.New("no server certificate")
	}
	cert := st.PeerCertificates[0]
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256:
		h = sha256.New()
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = sha512.New()
	default:
		return nil, fmt.Errorf("no tls-server-end-point binding for signature algorithm %v", cert.SignatureAlgorithm)
	}
	h.Write(cert.Raw)
	return h.Sum(nil), nil
}

// startTLS asks the upstream for TLS on nc (SSLRequest) and returns the
// TLS client, not yet handshaken.
func startTLS(nc net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	var req [8]byte
	binary.BigEndian.PutUint32(req[0:], 8)
	binary.BigEndian.PutUint32(req[4:], sslRequestCode)
	if _, err := nc.Write(req[:]); err != nil {
		return nil, fmt.Errorf("sslrequest: %w", err)
	}
	var resp [1]byte
	if _, err := io.ReadFull(nc, resp[:]); err != nil {
		return nil, fmt.Errorf("sslrequest: %w", err)
	}
	if resp[0] != 'S' {
		return nil, errors.New("server refused TLS connection")
	}
	return tls.Client(nc, cfg), nil
}

// asciiOnly reports whether s needs no SASLprep: printable ASCII maps to
// itself, and a control character makes SASLprep fail, after which
// Postgres and pgconn both use the password as it is.
func asciiOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
