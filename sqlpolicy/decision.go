package sqlpolicy

// Analyzer turns SQL text into an Access for one dialect. Implementations:
// sqlpolicy/pganalyze (pg_query) and sqlpolicy/myanalyze (TiDB parser).
// Analyze never fails: text it cannot parse or model comes back as a
// Statement with Problems, so the decision denies it with a reason.
//
// Everything dialect-specific stays behind this interface: how names
// resolve (search path, current database), which settings change how text
// is lexed or resolved, which relations are system catalogs, which
// functions are built in. The analyzer writes its judgement into the
// Access (Setting.Guarded, TableRef.System, FuncRef.Builtin,
// Statement.Upsert ...), and Decide reads only that.
type Analyzer interface {
	// Analyze analyzes sql in session s, which must come from this
	// analyzer's NewSession (nil means a fresh session).
	Analyze(sql string, s Session) *Access
	// Normalize returns the text with literals replaced by placeholders, or
	// an error when the text does not parse. Texts with equal normalized
	// forms have equal Access unless Access.LiteralSensitive().
	Normalize(sql string) (string, error)
	// NewSession returns the state of a new connection in this dialect.
	NewSession() Session
}

// SessionNormalizer is implemented by analyzers whose normalized form
// depends on the session (MySQL: the sql_mode decides whether a double
// quote starts a string and a backslash escapes). Engine uses NormalizeIn
// instead of Normalize when deciding a text; the normalized form must then
// depend on nothing but the text and what the session's Generation
// identifies, since decision cache entries are keyed on both. Normalize
// stays the session-independent form (Redact).
type SessionNormalizer interface {
	NormalizeIn(sql string, s Session) (string, error)
}

// ShapeAnalyzer is implemented by analyzers that can tell, from a scan of
// the text that costs a fraction of a parse, that a text is of a shape the
// decision cache cannot hold yet, and that can then analyze and normalize
// it from one parse. An agent that writes a new statement every time
// would otherwise pay for two parses per text: one to normalize it (to
// look the normal form up, and to redact the text for the audit) and one
// to analyze it.
//
// Engine skips the normalized lookup only for a shape it never stored a
// normalized entry for, so Shape should give texts that Normalize alike
// equal shapes (where it does not, a variant misses the normalized entry
// and is analyzed: a cost, never a wrong answer); texts of one shape may
// normalize differently. Shape only steers the lookup: no decision is
// taken from it.
//
// Shape makes the checks Analyze and Normalize make before parsing (the
// bounds that keep the parser's C code within its stack); the other two
// methods skip them and may only be given a text Shape accepted.
type ShapeAnalyzer interface {
	// Shape returns a hash of sql's tokens with literals left out, or
	// false when the text is refused before parsing.
	Shape(sql string) (uint64, bool)
	// AnalyzeNormalize returns what Analyze and Normalize return for sql.
	AnalyzeNormalize(sql string, s Session) (*Access, string, error)
	// NormalizeShaped returns what Normalize returns for sql.
	NormalizeShaped(sql string) (string, error)
}

// FastNormalizer is implemented by analyzers that can compute the
// normal form of some texts without parsing them: a literal variant of a
// statement the decision cache holds is then answered for the cost of a
// lexer pass, not a parse.
//
// FastNormal writes into f.Text sql's form in Normalize's format, with
// every literal it recognizes replaced, and into f.Literals a description
// of the literals it replaced (their token classes and where their
// placeholders stand in f.Text), or returns false for a text outside the
// subset it lexes exactly as the dialect's lexer does. It may replace
// literals Normalize keeps (or the reverse): the Engine only answers from
// a normalized entry it has seen the fast form agree with Normalize for
// (see Engine.check). What it must guarantee is that texts with equal
// Text and Literals are the same token sequence apart from the values of
// the literals replaced, each of the same token class, so that they parse
// to the same tree but for those constants; and, for a ShapeAnalyzer,
// that Shape refuses both or neither (the Engine answers a text from such
// an entry without calling Shape).
//
// It may also list in f.Digits literals of sql that are runs of decimal
// digits whose every variant keeps the fast form: a text equal to sql but
// in those runs, each of which holds another run of one to nine decimal
// digits, and no longer than sql, must get the same Text and Literals
// (and the same verdict from Shape). The Engine then answers such a text
// from a session's memo of sql (RecentText) without calling FastNormal.
type FastNormalizer interface {
	FastNormal(sql string, f *FastForm) bool
}

// FastForm is FastNormalizer's output; its slices are reused.
type FastForm struct {
	Text, Literals []byte
	// Digits holds the bounds in the text, start and end by pairs in
	// ascending order, of the digit runs whose variants keep the form
	// (see FastNormalizer); empty when the analyzer names none.
	Digits []int32
}

// Session is one connection's dialect state that changes how later text
// is resolved: the search path or current database, SQL-level prepared
// statements, whether a transaction block is open. It is owned by the
// dialect's analyzer (Analyzer.NewSession); the proxies hold one per
// client connection and report what ran. A Session is not safe for
// concurrent use: a connection decides one text at a time.
type Session interface {
	// Generation identifies the state that affects resolution: 0 for a
	// session in its initial state (such sessions share decision cache
	// entries), otherwise a process-unique value that changes with it.
	Generation() uint64
	// Note records, when a text is allowed and before it runs, what it may
	// change: a text can change the state and then fail (after a COMMIT
	// in its middle) without Apply ever seeing it. It only widens what the
	// session considers possible. Engine.Check calls it.
	Note(a *Access)
	// Apply records the effects of a text that ran successfully upstream
	// and whose effects are settled (a simple query answered without
	// error), with no other text noted since it was decided.
	Apply(a *Access)
	// NoteMark returns a mark of the notes made so far, taken right after
	// a text's decision (with the lock that serializes the session).
	NoteMark() uint64
	// ApplyMarked is Apply for a text whose decision was followed by the
	// mark: texts decided after it (noted after the mark) may still be in
	// flight, pipelined behind it, and what they may change stays
	// possible when its settled effects replace the rest.
	ApplyMarked(a *Access, mark uint64)
	// ApplyUncommitted is Apply for statements whose implicit transaction
	// may still be rolled back by a later error (an extended-protocol
	// Execute answered before its Sync).
	ApplyUncommitted(a *Access)
	// Reset returns the session to a new connection's state (MySQL
	// COM_RESET_CONNECTION; Postgres DISCARD ALL is applied through Apply).
	Reset()
}

// SessionProber is implemented by analyzers whose sessions may start in a
// state the catalog does not describe. Postgres: the catalog's search path
// is its own login's (current_schemas of the catalog role); a session that
// logs in as another role (Vault dynamic credentials) may start on
// another one, from role settings or from its USAGE on the schemas of the
// database's default.
//
// SessionProbe returns the text of one query, or "" when every session
// starts as the catalog was read. The proxy runs it on each new upstream
// session right after login, before the client is told the session is
// ready, and hands its one row to the session (ProbeLearner). It must not
// change session state the agent can see.
type SessionProber interface {
	SessionProbe() string
}

// ProbeLearner is implemented by Sessions that take a SessionProbe's row.
type ProbeLearner interface {
	// LearnProbe records the probe's one row, each value in the text
	// format (nil for NULL). An error means the row is not what the probe
	// returns: the session's starting state is unknown, and the proxy must
	// refuse the session (fail closed).
	LearnProbe(row [][]byte) error
}

// Effect is the outcome of a decision.
type Effect string

const (
	Allow Effect = "allow"
	Deny  Effect = "deny"
)

// ReasonCode is the machine-readable kind of a Reason.
type ReasonCode string

const (
	ReasonAllowedByRule    ReasonCode = "allowed_by_rule"
	ReasonNoRule           ReasonCode = "no_rule"            // verb on table not allowed by any rule (default deny)
	ReasonColumnNotAllowed ReasonCode = "column_not_allowed" // table allowed, column not in its column list
	ReasonLabelDenied      ReasonCode = "label_denied"       // column carries a label the role denies
	ReasonFunctionDenied   ReasonCode = "function_denied"
	ReasonSettingDenied    ReasonCode = "setting_denied"
	ReasonLimitExceeded    ReasonCode = "limit_exceeded" // a setting change past the role's resource limit
	ReasonScopeDenied      ReasonCode = "scope_denied"   // outside the agent token's narrower scope
	ReasonUnknownAgent     ReasonCode = "unknown_agent"
	ReasonProblem          ReasonCode = "problem" // analyzer Problem (see Reason.Problem)
)

// Reason is one structured cause of a decision.
type Reason struct {
	Code    ReasonCode  `json:"code"`
	Verb    Verb        `json:"verb,omitempty"`
	Table   string      `json:"table,omitempty"`
	Column  string      `json:"column,omitempty"`
	Label   string      `json:"label,omitempty"`
	Func    string      `json:"function,omitempty"`
	Setting string      `json:"setting,omitempty"`
	Problem ProblemCode `json:"problem,omitempty"`
	// Rule names the policy rule involved, e.g. "roles.analyst.deny_labels[pii.*]".
	Rule   string `json:"rule,omitempty"`
	Detail string `json:"detail,omitempty"`
	// SettingKind is the kind of a refused setting change (setting_denied).
	SettingKind SettingKind `json:"setting_kind,omitempty"`
	// Limit is the role's limit a setting change would exceed
	// (limit_exceeded).
	Limit Limit `json:"limit,omitempty"`
}

// Decision is the answer to "may this agent run this text".
type Decision struct {
	Effect Effect `json:"decision"`
	// Rule is the rule that decided: for an allow, the rule(s) that allowed
	// the last statement; for a deny, the rule (or "default-deny") behind
	// the first reason.
	Rule    string   `json:"rule"`
	Agent   string   `json:"agent,omitempty"`
	Role    string   `json:"role,omitempty"`
	Reasons []Reason `json:"reasons,omitempty"`
	// MaxRows is the role's cap on rows returned per statement; 0 = none.
	MaxRows int `json:"max_rows,omitempty"`
	// SQLState is the SQLSTATE a denial is reported with: 42501 for a
	// refusal by the policy; for a statement that names what does not
	// exist, the code the upstream would give (42601 syntax error, 42P01
	// unknown relation, 42703 unknown column, 42883 unknown function,
	// 26000 unknown prepared statement), so that drivers and agents can
	// branch on it. It is chosen from the deciding reason (see render);
	// a not-found code is never chosen when the statement is also refused
	// by the policy, so it tells nothing about relations the role may not
	// use. The MySQL front end maps these codes to its errnos. Empty on
	// allows.
	SQLState string `json:"sqlstate,omitempty"`
	// Message, Detail and Hint are the rendered texts for the wire error
	// (Postgres ErrorResponse M/D/H fields; MySQL message). Hint is written
	// for an LLM agent that will retry: what it may read instead.
	Message string `json:"message,omitempty"`
	Detail  string `json:"detail,omitempty"`
	Hint    string `json:"hint,omitempty"`

	// Redacted and Fingerprint are what Decider.Redact returns for the
	// decided text, when the engine normalized the text while deciding it
	// (empty otherwise: call Redact). Texts that share a decision share
	// their normalized form, so the proxies' audit need not parse again.
	Redacted    string `json:"-"`
	Fingerprint string `json:"-"`
}

// Allowed reports whether the decision allows the text.
func (d *Decision) Allowed() bool { return d.Effect == Allow }

// Decider is what both proxies call; *Engine implements it, and a Holder
// swaps engines atomically on policy reload. Implementations are safe for
// concurrent use.
type Decider interface {
	// Role returns the agent's role and the upstream name the role uses;
	// ok is false when the policy does not know the agent (its sessions
	// must end).
	Role(agent string) (role, upstream string, ok bool)
	// UpstreamSettings returns the settings a new upstream session of the
	// agent must start with: its role's resource limits in the upstream's
	// dialect (Postgres: startup parameters, set at login at no extra
	// round trip). The analyzer's reading of setting changes keeps
	// statements from raising or lifting them. nil for an unknown agent,
	// or a dialect that maps no limit.
	UpstreamSettings(agent string) map[string]string
	// Check analyzes and decides one text for a principal in a session.
	// The returned values are shared and must not be modified; the caller
	// passes the Access to Session.Apply after the text ran upstream.
	Check(p Principal, sql string, s Session) (*Decision, *Access)
	// NewSession returns the dialect state of a new connection, for Check.
	NewSession() Session
	// LoginProbe returns the session probe (SessionProber) of a new
	// upstream session of agent: its upstream's analyzer's, "" for none
	// (also for an agent the policy does not know: everything it sends is
	// denied). It is part of Decider, not an optional interface, so that
	// a wrapper cannot hide it: a proxy that skipped the probe would
	// decide on the catalog's search path.
	LoginProbe(agent string) string
	// Redact returns the text with literals replaced by placeholders (for
	// audit) and a stable fingerprint of its structure.
	Redact(sql string) (text, fingerprint string)
}

// EpochDecider is a Decider that tells when an allow it gave still stands
// without deciding again: the Postgres front end decides a prepared
// statement again at every Bind (a reload may have narrowed the role, and
// drivers Parse a statement once), and for an unchanged policy that is the
// same lookup every time.
//
// The contract: while Epoch returns the epoch CheckEpoch returned with an
// allow (never 0), Check of the same principal and text in a session of
// the same Generation (read before the call) returns an equal decision and
// access, and its only other effect is the session's Note of that access,
// which the caller then makes itself. Anything else a decision depends on
// (the policy, the catalog, the analyzer) changes the epoch; an allow that
// may end without that (a time-limited grant's) comes with epoch 0. Role
// too answers the same while Epoch returns the same epoch (never 0): the
// front ends look an agent's role up again only when the epoch moves.
type EpochDecider interface {
	Decider
	// CheckEpoch is Check, also returning the epoch the decision was made
	// in, or 0 when it may not be reused (denials, grants).
	CheckEpoch(p Principal, sql string, s Session) (*Decision, *Access, uint64)
	// Epoch is the current epoch.
	Epoch() uint64
}

// SchemaNotifier is a Decider whose catalogs can be read again: a front
// end calls SchemaChanged once a statement that changes the schema
// (Statement.ChangesSchema) has taken effect on the server (for Postgres, once
// its transaction committed), so that relations an agent created, altered
// or dropped are known to later decisions without a SIGHUP. It does not
// wait for the reading.
type SchemaNotifier interface {
	SchemaChanged()
}

// ChangesSchema reports whether a text's analysis holds a statement that
// changes the schema (Statement.ChangesSchema).
func ChangesSchema(a *Access) bool {
	if a == nil {
		return false
	}
	for i := range a.Statements {
		if a.Statements[i].ChangesSchema() {
			return true
		}
	}
	return false
}

// ChangesSchema reports whether the statement changes the schema: DDL,
// but for the commands that change only data or storage.
func (st *Statement) ChangesSchema() bool {
	return st.Verb == VerbDDL && !dataOnlyDDL[st.Command]
}

// dataOnlyDDL are the commands of VerbDDL (Statement.Command) that leave
// every relation, column, constraint and comment as it was.
var dataOnlyDDL = map[string]bool{
	"TRUNCATE": true, "TRUNCATE TABLE": true, "SET CONSTRAINTS": true,
	"REFRESH MATERIALIZED VIEW": true, "CLUSTER": true, "REINDEX": true,
}
