package pgproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// SQLSTATE codes keyhole sends itself.
const (
	codeProtocolViolation  = "08P01"
	codeFeatureUnsupported = "0A000"
	codeConnectionFailure  = "08006"
	codeUnableToConnect    = "08001"
	codeInvalidAuthSpec    = "28000"
	codeInvalidPassword    = "28P01"
	codeInsufficientPriv   = "42501"
	codeTooManyConnections = "53300"
	codeProgramLimit       = "54000"
	codeOutOfMemory        = "53200"
	codeAdminShutdown      = "57P01"
	codeIdleSessionTimeout = "57P05"
	codeInvalidStmtName    = "26000"
	codeInvalidCursorName  = "34000"
	codeInternalError      = "XX000"
	severityFatal          = "FATAL"
	severityError          = "ERROR"
	protocolName           = "postgres"
)

// pgError is an error with the fields of a Postgres ErrorResponse. Message
// is what the client sees; cause is for logs only.
type pgError struct {
	severity string
	code     string
	message  string
	detail   string
	hint     string
	cause    error
}

func (e *pgError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s %s: %s: %v", e.severity, e.code, e.message, e.cause)
	}
	return fmt.Sprintf("%s %s: %s", e.severity, e.code, e.message)
}

func (e *pgError) Unwrap() error { return e.cause }

func (e *pgError) response() *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{
		Severity:            e.severity,
		SeverityUnlocalized: e.severity,
		Code:                e.code,
		Message:             e.message,
		Detail:              e.detail,
		Hint:                e.hint,
	}
}

func fatal(code, msg string, cause error) *pgError {
	return &pgError{severity: severityFatal, code: code, message: msg, cause: cause}
}

func stmtError(code, msg string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: severityError, SeverityUnlocalized: severityError, Code: code, Message: msg}
}

var (
	// errClientGone: the client closed its end or sent Terminate; nothing to send.
	errClientGone = errors.New("client closed the connection")
	// errUpstreamFatal: the upstream sent its own FATAL (already relayed).
	errUpstreamFatal = errors.New("upstream ended the session")
	errShutdown      = fatal(codeAdminShutdown, "terminating connection: keyhole is shutting down", nil)
	errRevoked       = fatal(codeAdminShutdown, "terminating connection: keyhole upstream credentials revoked", nil)
	errExpired       = fatal(codeInvalidAuthSpec, "terminating connection: agent authorization expired", nil)
	errAgentRemoved  = fatal(codeInvalidAuthSpec, "terminating connection: agent is no longer allowed by the policy", nil)
	errTokenRevoked  = fatal(codeInvalidAuthSpec, "terminating connection: the agent token has been revoked", nil)
	errSecretChanged = fatal(codeInvalidAuthSpec, "terminating connection: the agent's secret was changed; log in with the new one", nil)
	errIdle          = fatal(codeIdleSessionTimeout, "terminating connection due to idle-session timeout", nil)
)

// wireError converts the error that ended a connection into the one
// ErrorResponse the client gets, or nil when nothing should be sent.
func wireError(err error) *pgproto3.ErrorResponse {
	if err == nil || errors.Is(err, errClientGone) || errors.Is(err, errUpstreamFatal) {
		return nil
	}
	var pe *pgError
	if errors.As(err, &pe) {
		return pe.response()
	}
	var tooBig *pgproto3.ExceededMaxBodyLenErr
	if errors.As(err, &tooBig) {
		return fatal(codeProtocolViolation, "message exceeds the maximum message size", nil).response()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		return fatal(codeProtocolViolation, "timeout reading from client", nil).response()
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return nil
	}
	// Everything else is a malformed or out-of-order message.
	return fatal(codeProtocolViolation, "protocol violation", nil).response()
}

// withheldRowDetail replaces the DETAIL of an integrity constraint
// violation the role may not see whole.
const withheldRowDetail = "keyhole: the server's detail is withheld: it shows values of the row, and this role may not read every column of %s"

// withholdRowDetail keeps the values of rows the role may not read out of
// an upstream error, and returns the error re-encoded when it changed it
// (nil when it passes as it is).
//
// Postgres's integrity constraint violations (class 23: not-null, check,
// unique, foreign key, exclusion, partition constraint) describe the
// offending row in their DETAIL: "Failing row contains (1,
// ada@example.com, null)", "Key (email, tenant)=(ada@example.com, 2)
// already exists". Postgres leaves out the columns the session's login
// may not SELECT (ExecBuildSlotValueDescription,
// BuildIndexValueDescription), but the login is the upstream's, which
// may read more than the role (a static login, a Vault role wider than
// the policy): UPDATE customers SET note = NULL, allowed to a role that
// may write note, would show the row's labelled columns. So such a DETAIL
// passes only when the role may read every column of the table the error
// names (a SELECT * of it is allowed, decided quietly: no access request
// for a statement the agent did not write); otherwise, and when the error
// names no table, it is replaced.
func (c *conn) withholdRowDetail(m *pgproto3.ErrorResponse) []byte {
	if m.Detail == "" || !strings.HasPrefix(m.Code, "23") {
		return nil
	}
	table := "the table"
	if m.TableName != "" {
		rel := quoteIdent(m.TableName)
		if m.SchemaName != "" {
			rel = quoteIdent(m.SchemaName) + "." + rel
		}
		if c.mayReadWhole(rel) {
			return nil
		}
		table = rel
	}
	m.Detail = fmt.Sprintf(withheldRowDetail, table)
	raw, err := m.Encode(nil)
	if err != nil {
		// Cannot happen for a message that decoded; withhold the whole
		// error's text rather than pass the detail.
		raw, _ = (&pgproto3.ErrorResponse{Severity: m.Severity, Code: m.Code, Message: m.Message}).Encode(nil)
	}
	return raw
}

// mayReadWhole reports whether the policy lets the role read every column
// of rel (a quoted, qualified name): SELECT * FROM rel is allowed.
func (c *conn) mayReadWhole(rel string) bool {
	sql := "SELECT * FROM " + rel
	var dec *sqlpolicy.Decision
	c.sessMu.Lock()
	if q, ok := c.srv.cfg.Decider.(quietChecker); ok {
		dec, _ = q.CheckQuiet(c.agent.Principal(), sql, c.session)
	} else {
		dec, _ = c.srv.cfg.Decider.Check(c.agent.Principal(), sql, c.session)
	}
	c.sessMu.Unlock()
	return dec != nil && dec.Allowed()
}

// quietChecker is a Decider that decides without opening an access
// request for a denial (the gateway's): for statements keyhole asks about
// on its own, which no agent wrote.
type quietChecker interface {
	CheckQuiet(p sqlpolicy.Principal, sql string, s sqlpolicy.Session) (*sqlpolicy.Decision, *sqlpolicy.Access)
}

// quoteIdent quotes a Postgres identifier.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// The server's error and notice texts can name the role keyhole logs in
// as (role "v-token-analyst-x7Qz" ..., user mapping for "..."), a name
// Vault generated that the agent must not learn: every ErrorResponse and
// NoticeResponse relayed, audited or logged has it replaced by the name
// the agent connected as, as session_authorization is (paramValue).
// Values in rows (SELECT current_user) are the policy's to decide.

// scrubLogin returns msg with every occurrence of login that no
// identifier character touches replaced by shown; ok is false when msg
// does not name login.
func scrubLogin(msg, login, shown string) (string, bool) {
	if login == "" || !strings.Contains(msg, login) {
		return msg, false
	}
	var b []byte
	i := 0
	for {
		k := creds.IndexLogin(msg[i:], login)
		if k < 0 {
			break
		}
		k += i
		b = append(b, msg[i:k]...)
		b = append(b, shown...)
		i = k + len(login)
	}
	if b == nil {
		return msg, false
	}
	return string(append(b, msg[i:]...)), true
}

// upLogin is the upstream login to scrub ("" before there is one).
func (c *conn) upLogin() string {
	if c.lease == nil {
		return ""
	}
	return c.lease.User
}

// scrubFields scrubs the login from the text fields of an ErrorResponse
// or NoticeResponse (both decode to the same fields) and reports whether
// any changed.
func (c *conn) scrubFields(m *pgproto3.ErrorResponse) bool {
	login := c.upLogin()
	if login == "" {
		return false
	}
	changed := false
	for _, f := range []*string{&m.Message, &m.Detail, &m.Hint, &m.Where, &m.InternalQuery} {
		if s, ok := scrubLogin(*f, login, c.user); ok {
			*f, changed = s, true
		}
	}
	return changed
}

// scrubNotice is the NoticeResponse raw with the login scrubbed, or raw
// itself when it does not name the login.
func (c *conn) scrubNotice(raw []byte) []byte {
	login := c.upLogin()
	if login == "" || !strings.Contains(string(raw), login) {
		return raw
	}
	var m pgproto3.ErrorResponse
	if err := m.Decode(raw[5:]); err != nil || !c.scrubFields(&m) {
		return raw
	}
	out, err := (*pgproto3.NoticeResponse)(&m).Encode(nil)
	if err != nil {
		return raw
	}
	return out
}

// scrubbedError is an upstream error kept for the log, its text with the
// login scrubbed; errors.Is and As still see the error it wraps.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrubErr wraps err so that its text does not name the login.
func (c *conn) scrubErr(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := scrubLogin(err.Error(), c.upLogin(), c.user); ok {
		return &scrubbedError{msg: s, err: err}
	}
	return err
}
