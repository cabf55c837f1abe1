package mysqlproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/keyholedb/keyhole/creds"
)

// MySQL error numbers and SQLSTATEs keyhole sends itself (mysqld_error.h,
// sql_state.h). Each number always travels with its SQLSTATE.
const (
	erConCount               = 1040 // 08004 too many connections
	erTooManyUserConns       = 1203 // 42000 user has more than max_user_connections
	erOutOfResources         = 1041 // HY000 out of memory
	erHandshake              = 1043 // 08S01 bad handshake
	erDBAccessDenied         = 1044 // 42000
	erAccessDenied           = 1045 // 28000
	erAccessDeniedNoPassword = 1698 // 28000
	erUnknownCom             = 1047 // 08S01 unknown or refused command / protocol violation
	erServerShutdown         = 1053 // 08S01
	erBadDB                  = 1049 // 42000 unknown database
	erBadField               = 1054 // 42S22 unknown column
	erParseError             = 1064 // 42000 syntax error
	erNoSuchThread           = 1094 // HY000 unknown thread id (KILL)
	erTooBigSelect           = 1104 // 42000
	erUnknownError           = 1105 // HY000 upstream or credentials unavailable
	erUnknownCharset         = 1115 // 42000
	erTableAccessDenied      = 1142 // 42000
	erNotAllowedCommand      = 1148 // 42000 e.g. LOAD DATA LOCAL without CLIENT_LOCAL_FILES
	erColumnAccessDenied     = 1143 // 42000
	erNetPacketTooLarge      = 1153 // 08S01
	erNoSuchTable            = 1146 // 42S02
	erNetPacketsOutOfOrder   = 1156 // 08S01
	erNetReadInterrupted     = 1159 // 08S01 timeout reading a packet
	erUnknownStmtHandler     = 1243 // HY000
	erNotSupportedAuthMode   = 1251 // 08004
	erSPDoesNotExist         = 1305 // 42000 unknown function or procedure
	erMaxPreparedStmtCount   = 1461 // 42000 too many prepared statements
	erConnectionKilled       = 1927 // 70100 (MariaDB) the session was ended by KILL
	erClientInteractTimeout  = 4031 // HY000 idle session ended (MySQL 8.0.24+)
)

// sqlError is one MySQL ERR packet: error number, SQLSTATE and message
// travel together (like vitess's sqlerror.SQLError). fatal errors end the
// session after they are sent; cause is for logs only and never reaches
// the client.
type sqlError struct {
	num     uint16
	state   string
	message string
	fatal   bool
	cause   error
}

func (e *sqlError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("ERROR %d (%s): %s: %v", e.num, e.state, e.message, e.cause)
	}
	return fmt.Sprintf("ERROR %d (%s): %s", e.num, e.state, e.message)
}

func (e *sqlError) Unwrap() error { return e.cause }

// Code is the errno and SQLSTATE as audit records them, e.g. "1142/42000".
func (e *sqlError) code() string { return fmt.Sprintf("%d/%s", e.num, e.state) }

// maxErrMessage is what libmysqlclient and Connector/C keep of an error
// message (MYSQL_ERRMSG_SIZE 512, NUL included); a longer one is cut there.
const maxErrMessage = 511

// packet encodes the ERR packet payload (protocol 4.1 form).
func (e *sqlError) packet(dst []byte) []byte {
	msg := truncateUTF8(e.message, maxErrMessage)
	dst = append(dst, 0xff, byte(e.num), byte(e.num>>8), '#')
	state := e.state
	if len(state) != 5 {
		state = "HY000"
	}
	dst = append(dst, state...)
	return append(dst, msg...)
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}

func fatalErr(num uint16, state, msg string, cause error) *sqlError {
	return &sqlError{num: num, state: state, message: msg, fatal: true, cause: cause}
}

func stmtErr(num uint16, state, msg string) *sqlError {
	return &sqlError{num: num, state: state, message: msg}
}

func protocolErr(msg string, cause error) *sqlError {
	return fatalErr(erUnknownCom, "08S01", msg, cause)
}

func upstreamUnavailable(cause error) *sqlError {
	return fatalErr(erUnknownError, "HY000", "keyhole: upstream unavailable", cause)
}

func accessDenied(msg string, cause error) *sqlError {
	return fatalErr(erAccessDenied, "28000", msg, cause)
}

var (
	// errClientGone: the client closed its end or sent COM_QUIT; nothing to send.
	errClientGone = errors.New("client closed the connection")
	// errUpstreamFatal: the upstream ended the session with its own error, already relayed.
	errUpstreamFatal = errors.New("upstream ended the session")

	errShutdown      = fatalErr(erServerShutdown, "08S01", "keyhole is shutting down", nil)
	errRevoked       = fatalErr(erServerShutdown, "08S01", "keyhole: upstream credentials revoked; connection closed", nil)
	errAgentRevoked  = fatalErr(erAccessDenied, "28000", "keyhole: the agent's access was revoked; connection closed", nil)
	errExpired       = fatalErr(erAccessDenied, "28000", "keyhole: agent authorization expired; connection closed", nil)
	errAgentRemoved  = fatalErr(erAccessDenied, "28000", "keyhole: agent is no longer allowed by the policy; connection closed", nil)
	errTokenRevoked  = fatalErr(erAccessDenied, "28000", "keyhole: the agent token has been revoked; connection closed", nil)
	errSecretChanged = fatalErr(erAccessDenied, "28000", "keyhole: the agent's secret was changed; log in with the new one; connection closed", nil)
	errIdle          = fatalErr(erClientInteractTimeout, "HY000", "keyhole: the client was disconnected because of inactivity", nil)
	errTimeout       = fatalErr(erNetReadInterrupted, "08S01", "keyhole: timeout reading from the client", nil)
	errKilled        = fatalErr(erConnectionKilled, "70100", "Connection was killed", nil)
	errLost          = fatalErr(erUnknownError, "HY000", "keyhole: upstream connection lost", nil)
	errNoMemory      = fatalErr(erOutOfResources, "HY000", "keyhole: out of memory for client packets; try again later", nil)
	errOutOfOrder    = fatalErr(erNetPacketsOutOfOrder, "08S01", "Got packets out of order (keyhole: a command starts with sequence id 0)", nil)
	errLocalInfile   = fatalErr(erNotAllowedCommand, "42000", "keyhole: the server asked for a file of the client (LOAD DATA LOCAL INFILE); keyhole never lets a server read client files", nil)
)

// wireError converts the error that ended a connection into the one ERR
// packet the client gets, or nil when nothing should be sent. It is the
// only place a Go error becomes a MySQL error.
func wireError(err error) *sqlError {
	if err == nil || errors.Is(err, errClientGone) || errors.Is(err, errUpstreamFatal) {
		return nil
	}
	var se *sqlError
	if errors.As(err, &se) {
		return se
	}
	var tooBig *packetTooLargeError
	if errors.As(err, &tooBig) {
		return fatalErr(erNetPacketTooLarge, "08S01", fmt.Sprintf("keyhole: got a packet bigger than %d bytes", tooBig.limit), nil)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		return errTimeout
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return nil
	}
	// Everything else is a malformed or out-of-order packet.
	return protocolErr("keyhole: protocol violation", nil)
}

// The upstream's own error texts name the login keyhole uses (MariaDB:
// "SELECT command denied to user 'v-approle-analyst-x7Qz'@'10.0.0.5' for
// table ...", "Access denied for user ... to database ..."), a name Vault
// generated that the agent must not learn. Every upstream ERR packet
// relayed or recorded has that login replaced by the name the agent
// logged in with, and the host part of 'user'@'host' (keyhole's address
// as the upstream sees it) by "keyhole"; errno and SQLSTATE are kept.
const scrubbedHost = "keyhole"

// maxUserInMessage is how much of a user name the server's messages
// keep ('%-.48s' in errmsg-utf8.txt).
const maxUserInMessage = 48

// scrubLogin returns msg with every whole-word occurrence of login (or of
// its first maxUserInMessage bytes, where the server cut it) replaced by
// agent, and a following @'host' by @'keyhole'. ok is false when msg does
// not name login.
func scrubLogin(msg, login, agent string) (string, bool) {
	if login == "" {
		return msg, false
	}
	names := []string{login}
	if len(login) > maxUserInMessage {
		names = append(names, login[:maxUserInMessage])
	}
	changed := false
	for _, name := range names {
		var b []byte
		i := 0
		for {
			k := creds.IndexLogin(msg[i:], name)
			if k < 0 {
				break
			}
			k += i
			b = append(b, msg[i:k]...)
			b = append(b, agent...)
			i = k + len(name)
			if q := msg[i:]; len(q) >= 3 && q[0] == '\'' && q[1] == '@' && q[2] == '\'' {
				if end := strings.IndexByte(q[3:], '\''); end >= 0 {
					b = append(b, "'@'"+scrubbedHost+"'"...)
					i += 3 + end + 1
				}
			}
		}
		if b != nil {
			msg, changed = string(append(b, msg[i:]...)), true
		}
	}
	return msg, changed
}

// shownUser is the name upstream errors show in place of the login: the
// user the agent logged in as.
func (c *conn) shownUser() string {
	if c.user != "" {
		return c.user
	}
	return c.agentName()
}

// scrubErrPacket is the upstream ERR payload h (all n bytes of it) with
// the login scrubbed from its message, or nil when it needs no change.
func (c *conn) scrubErrPacket(n int, h []byte) []byte {
	if c.lease == nil || n != len(h) || len(h) < 3 || h[0] != 0xff {
		return nil
	}
	i := 3
	if len(h) >= 9 && h[3] == '#' {
		i = 9
	}
	msg, ok := scrubLogin(string(h[i:]), c.lease.User, c.shownUser())
	if !ok {
		return nil
	}
	p := append([]byte(nil), h[:i]...)
	return append(p, truncateUTF8(msg, maxErrMessage)...)
}

// errFrom is the error of an upstream ERR payload, as audit records it:
// the login scrubbed.
func (c *conn) errFrom(h []byte) *sqlError {
	e := errFromPacket(h)
	if c.lease != nil {
		e.message, _ = scrubLogin(e.message, c.lease.User, c.shownUser())
	}
	return e
}

// scrubUpstream scrubs the login from an upstream error (login, setup)
// kept as the cause in logs.
func (c *conn) scrubUpstream(err error) error {
	var ue *upstreamError
	if c.lease != nil && errors.As(err, &ue) {
		ue.message, _ = scrubLogin(ue.message, c.lease.User, c.shownUser())
	}
	return err
}
