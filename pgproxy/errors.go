package pgproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/jackc/pgx/v5/pgproto3"
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
