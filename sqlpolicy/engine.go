package sqlpolicy

import (
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/keyholedb/keyhole/catalog"
)

// DefaultCacheBytes is the decision cache budget when EngineOptions leaves
// CacheBytes zero.
const DefaultCacheBytes = 32 << 20

// EngineOptions tunes an Engine. The zero value is the documented default.
type EngineOptions struct {
	// CacheBytes bounds the decision cache (approximate bytes of texts,
	// analyses and decisions held). 0 means DefaultCacheBytes; negative
	// disables the cache, so every Check parses and decides.
	CacheBytes int64
}

// CacheStats are the decision cache's counters.
type CacheStats struct {
	Hits, Misses, Evictions uint64
	Entries                 int
	Bytes                   int64
}

// Engine decides texts for one policy, catalog and analyzer. It implements
// Decider and is safe for concurrent use. A policy change builds a new
// Engine (with a new, empty cache) and swaps it into a Holder.
type Engine struct {
	policy *Policy
	cat    *catalog.Catalog
	an     Analyzer
	cache  *cache // nil when disabled
	id     uint64 // unique per engine: what a session's RecentText names
	// fast is an's FastNormalizer, nil when it has none or its normal
	// form depends on the session (SessionNormalizer): the fast lookup
	// is part of the shaped path, which such analyzers never take.
	fast FastNormalizer
}

var _ Decider = (*Engine)(nil)

// NewEngine builds an Engine. The policy should have been loaded against
// the same catalog the analyzer resolves names with.
func NewEngine(p *Policy, cat *catalog.Catalog, a Analyzer, opts EngineOptions) *Engine {
	e := &Engine{policy: p, cat: cat, an: a, id: engineIDs.Add(1)}
	_, shaper := a.(ShapeAnalyzer)
	_, sessional := a.(SessionNormalizer)
	if fn, ok := a.(FastNormalizer); ok && shaper && !sessional {
		e.fast = fn
	}
	switch {
	case opts.CacheBytes == 0:
		e.cache = newCache(DefaultCacheBytes)
	case opts.CacheBytes > 0:
		e.cache = newCache(opts.CacheBytes)
	}
	return e
}

// Policy returns the engine's policy.
func (e *Engine) Policy() *Policy { return e.policy }

// Catalog returns the engine's catalog.
func (e *Engine) Catalog() *catalog.Catalog { return e.cat }

// CacheStats returns the decision cache counters (zero when disabled).
func (e *Engine) CacheStats() CacheStats {
	if e.cache == nil {
		return CacheStats{}
	}
	return e.cache.stats()
}

// Role implements Decider.
func (e *Engine) Role(agent string) (role, upstream string, ok bool) {
	r := e.policy.Role(agent)
	if r == nil {
		return "", "", false
	}
	return r.Name, r.Upstream, true
}

// UpstreamSettings implements Decider: the agent's role's limits, mapped
// to upstream settings by the analyzer (a LimitMapper).
func (e *Engine) UpstreamSettings(agent string) map[string]string {
	r := e.policy.Role(agent)
	m, ok := e.an.(LimitMapper)
	if r == nil || !ok {
		return nil
	}
	return m.UpstreamSettings(r.Limits)
}

// LoginProbe implements Decider: the analyzer's SessionProbe (the
// same for every agent of the engine's upstream).
func (e *Engine) LoginProbe(agent string) string {
	if p, ok := e.an.(SessionProber); ok {
		return p.SessionProbe()
	}
	return ""
}

// Check implements Decider: it analyzes and decides sql for p in session s
// (nil means a fresh session), answering from the decision cache when it
// can. The returned values are shared; callers must not modify them.
//
// When the text is allowed, Check also notes in s the search paths it may
// put in effect (see Session): a text can change the path and then fail,
// after a COMMIT in its middle, without Apply ever seeing it.
func (e *Engine) Check(p Principal, sql string, s Session) (*Decision, *Access) {
	d, a := e.check(p, sql, s)
	if s != nil && d != nil && d.Allowed() {
		s.Note(a)
	}
	return d, a
}

// NewSession implements Decider: a new connection's state in the
// analyzer's dialect.
func (e *Engine) NewSession() Session { return e.an.NewSession() }

// minExactFirst is the length from which a text is looked up at the exact
// level before the fast one. Below it the fast level answers first, and a
// text it answers is not stored at the exact level.
//
// Why: a statement with a new literal of a known shape (pgbench -S in
// simple mode, an agent's next query) misses the exact level, and under
// load that miss is a cold map probe (0.5 µs per statement in a profile of
// keyhole under pgbench, about a third of the decision) plus the
// doorkeeper's bit and, for a repeat it admits, a store; the fast form
// then has to be made anyway. A text that does repeat exactly pays the
// fast form instead of the exact hit: about 2.5 ns a byte more, which
// stays under the miss's cost for a short text, not for a long one
// (BenchmarkCheckNewLiteral, BenchmarkCheckRandomLiteral and
// BenchmarkCheckCached, whose 230-byte text would take 650 ns instead of
// 40 by the fast level).
const minExactFirst = 160

func (e *Engine) check(p Principal, sql string, s Session) (*Decision, *Access) {
	var gen uint64
	if s != nil {
		gen = s.Generation()
	}
	c := e.cache
	if c == nil {
		d, a, _ := e.analyze(p, sql, s)
		return d, a
	}
	// The session's memo answers a digit variant of the last text the
	// fast lookup answered in it, with what the fast lookup would answer
	// (see RecentText), before any other level. Such a text is one the
	// fast lookup takes: the engine has a FastNormalizer (so it is on
	// the shaped path), and the text has no '$' or '?' (its memo's text
	// had none, and only digits differ).
	var recent *RecentText
	if e.fast != nil {
		if k, ok := s.(RecentKeeper); ok {
			recent = k.RecentText()
			if d, a, ok := recent.answers(e.id, gen, &p, sql); ok {
				c.shards[recent.stripe].recentHits.Add(1)
				return d, a
			}
		}
	}
	exactKey := c.key(kindExact, sql, gen, &p)
	exactFirst := len(sql) >= minExactFirst
	if exactFirst {
		if d, a, ok := c.getKey(exactKey, kindExact, sql, gen, &p, nil); ok {
			return d, a
		}
	}
	// A text of a shape no normalized entry was stored for cannot hit
	// one: it is analyzed and normalized from one parse instead of being
	// parsed once to normalize and once more to analyze.
	var (
		d            *Decision
		a            *Access
		ok           bool
		norm         string
		normOK       bool
		shape        uint64
		shapeOK      bool
		sa, isShaper = e.an.(ShapeAnalyzer)
	)
	// The shaped path normalizes without the session: an analyzer whose
	// lexing depends on it (SessionNormalizer) never takes it.
	_, sessional := e.an.(SessionNormalizer)
	shaped := isShaper && !sessional
	// Only a text whose normal form tells where its literals were may
	// share a normalized entry. A placeholder in the text itself ($1,
	// MySQL's ?) reads in the normal form like a replaced literal (SELECT
	// $1, 5 and SELECT 5, 6 both give SELECT $1, $2), and Postgres lets an
	// unquoted identifier hold '$' (SELECT int4'5', text$1 and SELECT
	// int4$1, text'y' both give SELECT int4$1, text$1, reading other
	// columns). Such a text is decided on its own and cached exactly; it
	// is still normalized for its Redacted form.
	shared := strings.IndexByte(sql, '$') < 0 && strings.IndexByte(sql, '?') < 0 // (two vector scans: ContainsAny goes byte by byte)
	// ff is sql's fast form (FastNormalizer), nil when there is none. It
	// is made for texts of an unseen shape too: an entry stored for one
	// is marked when the fast form agrees with the normal form.
	var ff *FastForm
	if shaped && shared && e.fast != nil {
		buf := fastForms.Get().(*FastForm)
		defer putFastForm(buf)
		if e.fastNormal(sql, buf) {
			ff = buf
			// The fast lookup answers sql from a normalized entry without
			// normalizing it, nor scanning it for Shape: a lexer pass
			// instead of a parse. Invariant: it finds the entry the full
			// path below would find. getFast answers only from an entry
			// marked with ff's literals, and an entry is marked only when
			// some text X had the entry's text both as its normal form
			// (Normalize, computed on the full path) and as its fast
			// form, with those literals (putNorm and getNorm mark it). By
			// FastNormalizer's contract, sql is then X's token sequence
			// with other values, of the same token classes, in the
			// literals the fast form replaced, so it parses to X's tree
			// but for those constants: Normalize replaces the same tokens
			// in sql as in X, with the same numbers, and in X those are
			// exactly the tokens the fast form replaced (or the forms
			// would differ). So Normalize(sql) is the entry's text, and
			// the entry is keyed, as any, on the session generation and
			// principal; its Redacted and Fingerprint are what the full
			// path would give. Shape refuses sql exactly when it refuses
			// X (the contract again), so X's entry carries that verdict
			// too. Where the forms disagree (a literal Normalize keeps,
			// like ORDER BY 1), no entry is marked for that fast form,
			// and the full path decides.
			if d, a, stripe, ok := c.getFast(ff, gen, &p); ok {
				if recent != nil { // (shaped and shared hold, as the memo's answers assume)
					recent.remember(e.id, gen, &p, sql, ff, stripe, d, a)
				}
				if exactFirst && c.admit(exactKey) {
					c.putKey(exactKey, kindExact, sql, gen, &p, d, a, accessSize(a, d))
				}
				return d, a
			}
		}
	}
	if !exactFirst {
		if d, a, ok := c.getKey(exactKey, kindExact, sql, gen, &p, nil); ok {
			return d, a
		}
	}
	// Unknown agents are not cached: their sessions end, and caching would
	// let arbitrary names fill the cache. (No entry can exist for one, so
	// the lookups above, which compare the agent, miss for it: the policy
	// is asked only here, past the fast path's hit.)
	if e.policy.Role(p.Agent) == nil {
		d, a, _ := e.analyze(p, sql, s)
		return d, a
	}
	if shaped {
		shape, shapeOK = sa.Shape(sql)
	}
	if !shapeOK {
		ff = nil // (an entry is marked only by a text Shape accepted)
	}
	if shapeOK && (!shared || !c.seenShape(shape)) {
		var err error
		d, a, ok, norm, err = e.analyzeNormalize(p, sql, s, sa)
		normOK = err == nil
	} else {
		normalize := e.normalizeIn
		if shapeOK {
			normalize = func(sql string, _ Session) (string, error) { return e.normalizeShaped(sa, sql) }
		}
		if n, err := normalize(sql, s); err == nil {
			norm, normOK = n, true
			if shared {
				if d, a, ok := c.getNorm(norm, gen, &p, agreeing(ff, norm)); ok {
					if c.admit(exactKey) {
						c.putKey(exactKey, kindExact, sql, gen, &p, d, a, accessSize(a, d))
					}
					return d, a
				}
			}
		}
		d, a, ok = e.analyze(p, sql, s)
	}
	if !ok {
		return d, a
	}
	if normOK {
		d.Redacted, d.Fingerprint = norm, fingerprintOf(norm)
	}
	size := accessSize(a, d)
	c.putKey(exactKey, kindExact, sql, gen, &p, d, a, size)
	if normOK && shared && shareable(a) {
		c.putNorm(norm, gen, &p, d, a, size, agreeing(ff, norm))
		if shapeOK {
			c.addShape(shape)
		}
	}
	return d, a
}

// fastForms are reused FastForm buffers.
var fastForms = sync.Pool{New: func() any { return new(FastForm) }}

// putFastForm returns f to fastForms, unless a long text grew it.
func putFastForm(f *FastForm) {
	if cap(f.Text) <= 16<<10 {
		fastForms.Put(f)
	}
}

// agreeing returns ff when it is the fast form of a text whose normal
// form is norm and equals it, nil otherwise: the mark a normalized entry
// for norm may then carry.
func agreeing(ff *FastForm, norm string) *FastForm {
	if ff == nil || string(ff.Text) != norm {
		return nil
	}
	return ff
}

// fastNormal calls the analyzer's FastNormal; a panic declines the text.
func (e *Engine) fastNormal(sql string, f *FastForm) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			ok = false
		}
	}()
	return e.fast.FastNormal(sql, f)
}

// normalize calls the analyzer's Normalize; a panic counts as text that
// does not normalize (it is then analyzed, and denied, on the full path).
func (e *Engine) normalize(sql string) (n string, err error) {
	defer func() {
		if r := recover(); r != nil {
			n, err = "", fmt.Errorf("normalize: internal error: %v", r)
		}
	}()
	return e.an.Normalize(sql)
}

// normalizeIn is normalize in session s, for analyzers whose normal form
// depends on the session (SessionNormalizer).
func (e *Engine) normalizeIn(sql string, s Session) (n string, err error) {
	sn, ok := e.an.(SessionNormalizer)
	if !ok {
		return e.normalize(sql)
	}
	defer func() {
		if r := recover(); r != nil {
			n, err = "", fmt.Errorf("normalize: internal error: %v", r)
		}
	}()
	return sn.NormalizeIn(sql, s)
}

// normalizeShaped is normalize for a text sa.Shape accepted.
func (e *Engine) normalizeShaped(sa ShapeAnalyzer, sql string) (n string, err error) {
	defer func() {
		if r := recover(); r != nil {
			n, err = "", fmt.Errorf("normalize: internal error: %v", r)
		}
	}()
	return sa.NormalizeShaped(sql)
}

// analyze is the uncached path. A panic in the analyzer or the decision
// is a bug; it denies the text instead of taking the connection down, and
// the result is not cached (ok false).
func (e *Engine) analyze(p Principal, sql string, s Session) (d *Decision, a *Access, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			d, a, ok = e.panicked(p)
		}
	}()
	if s == nil {
		s = e.an.NewSession()
	}
	a = e.an.Analyze(sql, s)
	return e.policy.Decide(p, a, e.cat), a, true
}

// analyzeNormalize is analyze for a ShapeAnalyzer, which also returns the
// normal form from the same parse.
func (e *Engine) analyzeNormalize(p Principal, sql string, s Session, sa ShapeAnalyzer) (d *Decision, a *Access, ok bool, norm string, normErr error) {
	defer func() {
		if r := recover(); r != nil {
			d, a, ok = e.panicked(p)
			norm, normErr = "", fmt.Errorf("normalize: internal error: %v", r)
		}
	}()
	if s == nil {
		s = e.an.NewSession()
	}
	a, norm, normErr = sa.AnalyzeNormalize(sql, s)
	return e.policy.Decide(p, a, e.cat), a, true, norm, normErr
}

// panicked is the decision for a text whose analysis or decision panicked.
func (e *Engine) panicked(p Principal) (*Decision, *Access, bool) {
	d := &Decision{Effect: Deny, Rule: RuleDefaultDeny, Agent: p.Agent,
		Reasons: []Reason{{Code: ReasonProblem, Problem: ProblemUnsupported, Rule: RuleDefaultDeny,
			Detail: "internal error while deciding the statement"}},
		SQLState: SQLStateInsufficientPrivilege,
		Message:  msgPrefix + "internal error while deciding the statement",
		Hint:     "keyhole could not decide this statement; rewrite it more simply."}
	return d, &Access{}, false
}

// shareable reports whether an analysis may be reused for texts that
// differ only in literals. Besides the analyzer's own LiteralSensitive
// flag, statements that change settings are never shared: whether a SET is
// harmless can hinge on its value (standard_conforming_strings = on / off),
// and a missed flag must not turn one value's allow into another's.
func shareable(a *Access) bool {
	if a == nil || a.LiteralSensitive() {
		return false
	}
	for i := range a.Statements {
		if !statementShareable(&a.Statements[i]) {
			return false
		}
	}
	return true
}

func statementShareable(st *Statement) bool {
	if st == nil {
		return true
	}
	if st.LiteralSensitive || len(st.Settings) > 0 || st.Verb == VerbSet {
		return false
	}
	return statementShareable(st.Prepared) && statementShareable(st.Explained)
}

// Redact implements Decider: the text with literals replaced by
// placeholders and a 64-bit FNV-1a fingerprint of that text in hex, stable
// across processes. Text that does not parse is not echoed (it may hold a
// secret in what was meant to be a literal).
func (e *Engine) Redact(sql string) (text, fingerprint string) {
	norm, err := e.normalize(sql)
	if err != nil {
		norm = fmt.Sprintf("<unparseable statement, %d bytes>", len(sql))
		return norm, fingerprintOf("<unparseable>")
	}
	return norm, fingerprintOf(norm)
}

func fingerprintOf(s string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return fmt.Sprintf("%016x", h.Sum64())
}

// Holder holds the current Engine and swaps it atomically on policy
// reload; statements in flight finish on the engine they started with. It
// implements Decider. An empty Holder denies everything.
type Holder struct {
	e atomic.Pointer[Engine]
}

var _ Decider = (*Holder)(nil)

// NewHolder returns a Holder serving e.
func NewHolder(e *Engine) *Holder {
	h := &Holder{}
	h.e.Store(e)
	return h
}

// Swap installs e and returns the engine it replaces.
func (h *Holder) Swap(e *Engine) *Engine { return h.e.Swap(e) }

// Engine returns the current engine (nil before the first Swap of an empty
// Holder).
func (h *Holder) Engine() *Engine { return h.e.Load() }

// Role implements Decider.
func (h *Holder) Role(agent string) (string, string, bool) {
	e := h.e.Load()
	if e == nil {
		return "", "", false
	}
	return e.Role(agent)
}

// UpstreamSettings implements Decider.
func (h *Holder) UpstreamSettings(agent string) map[string]string {
	e := h.e.Load()
	if e == nil {
		return nil
	}
	return e.UpstreamSettings(agent)
}

// LoginProbe implements Decider.
func (h *Holder) LoginProbe(agent string) string {
	e := h.e.Load()
	if e == nil {
		return ""
	}
	return e.LoginProbe(agent)
}

// Check implements Decider.
func (h *Holder) Check(p Principal, sql string, s Session) (*Decision, *Access) {
	e := h.e.Load()
	if e == nil {
		d := &Decision{Effect: Deny, Rule: RuleDefaultDeny, Agent: p.Agent,
			Reasons:  []Reason{{Code: ReasonNoRule, Rule: RuleDefaultDeny, Detail: "no policy loaded"}},
			SQLState: SQLStateInsufficientPrivilege,
			Message:  msgPrefix + "no policy is loaded", Hint: "keyhole has no policy loaded; retry later."}
		return d, &Access{}
	}
	return e.Check(p, sql, s)
}

// NewSession implements Decider. Sessions outlive reloads: every engine a
// Holder swaps in must use the same dialect. With no engine it returns nil
// (a fresh session; everything is denied anyway).
func (h *Holder) NewSession() Session {
	e := h.e.Load()
	if e == nil {
		return nil
	}
	return e.NewSession()
}

// Redact implements Decider.
func (h *Holder) Redact(sql string) (string, string) {
	e := h.e.Load()
	if e == nil {
		return fmt.Sprintf("<statement, %d bytes>", len(sql)), fingerprintOf("<unparseable>")
	}
	return e.Redact(sql)
}
