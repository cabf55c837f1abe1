package audit

import (
	"time"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Kind is what an event records.
type Kind string

const (
	KindConnect    Kind = "connect"     // TCP connection accepted
	KindAuthOK     Kind = "auth_ok"     // agent authenticated
	KindAuthFailed Kind = "auth_failed" // agent authentication failed
	KindClose      Kind = "close"       // connection closed
	KindStatement  Kind = "statement"   // one decided statement text

	// Reviewers' actions (who, what, when, why, for how long).
	KindGrantApproved   Kind = "grant_approved"   // a request approved: a timed grant
	KindRequestDeclined Kind = "request_declined" // a request refused
	KindGrantRevoked    Kind = "grant_revoked"    // a grant ended early
	KindGrantExpired    Kind = "grant_expired"    // a grant reached its end
	KindReviewerLogin   Kind = "reviewer_login"   // a reviewer signed in to the console
	KindReviewerFailed  Kind = "reviewer_login_failed"
)

// Event is one audit record, written as one JSON line.
type Event struct {
	Time     time.Time `json:"time"`
	Kind     Kind      `json:"kind"`
	Session  string    `json:"session"`
	Protocol string    `json:"protocol,omitempty"` // "postgres" | "mysql"
	Client   string    `json:"client,omitempty"`   // client address
	Agent    string    `json:"agent,omitempty"`
	Role     string    `json:"role,omitempty"`
	Database string    `json:"database,omitempty"`
	// AuthMethod is "token", "scram" or "mtls" for auth events.
	AuthMethod string `json:"auth_method,omitempty"`

	// Statement is the text with literals replaced by placeholders unless
	// raw statements are configured.
	Statement   string             `json:"statement,omitempty"`
	Fingerprint string             `json:"fingerprint,omitempty"`
	Decision    sqlpolicy.Effect   `json:"decision,omitempty"`
	Rule        string             `json:"rule,omitempty"`
	Reasons     []sqlpolicy.Reason `json:"reasons,omitempty"`
	DurationMS  float64            `json:"duration_ms,omitempty"`
	Rows        int64              `json:"rows,omitempty"`
	// Error is the SQLSTATE / errno sent to the client, if any, and a
	// message that carries no secret.
	ErrorCode string `json:"error_code,omitempty"`
	Error     string `json:"error,omitempty"`
	// Outcome qualifies a statement event: "suspended" for a Postgres
	// Execute that stopped at the client's row limit (the portal may be
	// fetched further, each fetch its own event), "unknown" when the
	// session ended before the server answered (the statement may have
	// run). Empty when the statement completed or ErrorCode says how it
	// failed.
	Outcome string `json:"outcome,omitempty"`

	// Request is the access request a blocked statement opened or
	// counted (apr_…), and the request a reviewer event is about.
	Request string `json:"request,omitempty"`
	// Grant, Reviewer, Note, Scope, Access and Expires describe a
	// reviewer's action: the grant (grt_…), who acted and why, what the
	// grant covers and until when.
	Grant    string                `json:"grant,omitempty"`
	Reviewer string                `json:"reviewer,omitempty"`
	Note     string                `json:"note,omitempty"`
	Purpose  string                `json:"purpose,omitempty"`
	Scope    string                `json:"grant_scope,omitempty"`
	Access   []sqlpolicy.Exception `json:"access,omitempty"`
	Expires  time.Time             `json:"expires,omitzero"`
}

// Recorder receives events. Record must not lose an event silently: it
// blocks when its buffer is full rather than drop, and Close flushes.
type Recorder interface {
	Record(ev Event)
	Close() error
}
