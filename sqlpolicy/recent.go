package sqlpolicy

import "sync/atomic"

// RecentText is a session's memo of the last text the engine answered
// from the fast lookup (a normalized entry reached by the text's fast
// form, see FastNormalizer), with where that text's digit runs are
// (FastForm.Digits). A later text that equals it but in those runs, each
// holding another run of one to nine digits, and is no longer, has by
// FastNormalizer's contract the same fast form, so the fast lookup would
// give it the same entry; the engine answers it from the memo, comparing
// bytes instead of lexing the text, hashing its form and locking a cache
// shard. A client that sends one statement with a new number each time
// (pgbench -S in simple mode, an agent walking ids) pays that compare.
//
// The memo holds for one engine (a reload builds a new one), one session
// generation and one principal (agent and scope, as the cache's keys);
// any other is a miss. The zero value is an empty memo. A RecentText is
// the session's, and is used under whatever serializes the session.
type RecentText struct {
	engine uint64 // Engine.id; 0: empty
	gen    uint64
	agent  string
	scope  []Grant
	text   []byte
	digits []int32
	d      *Decision
	a      *Access
	// stripe is the cache shard of the entry the memo came from: a memo
	// answer is counted as a hit there (shard.recentHits), so that
	// sessions answered from different entries do not share a counter.
	stripe int
}

// RecentKeeper is implemented by Sessions that keep a RecentText for the
// engine.
type RecentKeeper interface {
	RecentText() *RecentText
}

// maxRecentText bounds the text a memo keeps (its buffer stays with the
// session while it is idle).
const maxRecentText = 1024

// engineIDs numbers engines, so that a memo names its engine without
// keeping it (and its cache) alive.
var engineIDs atomic.Uint64

// answers returns the memo's decision when sql is a digit variant of its
// text, decided by engine id, in session generation gen, for p.
func (r *RecentText) answers(id, gen uint64, p *Principal, sql string) (*Decision, *Access, bool) {
	if r.engine != id || r.gen != gen || len(sql) > len(r.text) || r.agent != p.Agent || !sameScope(r.scope, p.Scope) {
		return nil, nil, false
	}
	old := r.text
	i, j := 0, 0 // next byte of old and of sql
	for k := 0; k+1 < len(r.digits); k += 2 {
		start, end := int(r.digits[k]), int(r.digits[k+1])
		n := start - i
		if len(sql)-j < n || sql[j:j+n] != string(old[i:start]) {
			return nil, nil, false
		}
		j += n
		run := j
		for run < len(sql) && run-j <= 9 && isDigit(sql[run]) {
			run++
		}
		if run == j || run-j > 9 {
			return nil, nil, false
		}
		// The byte after the run is compared as old[end] below, and
		// old[end] is not a digit (the run ended there): sql's run is
		// whole.
		i, j = end, run
	}
	if sql[j:] != string(old[i:]) {
		return nil, nil, false
	}
	return r.d, r.a, true
}

// remember makes sql, whose fast form f the fast lookup answered with d
// and a from an entry in cache shard stripe, the memo's text.
func (r *RecentText) remember(id, gen uint64, p *Principal, sql string, f *FastForm, stripe int, d *Decision, a *Access) {
	if len(sql) > maxRecentText || !wholeRuns(sql, f.Digits) {
		r.engine = 0
		return
	}
	r.engine, r.gen, r.agent, r.scope = id, gen, p.Agent, cloneScope(p.Scope)
	r.text = append(r.text[:0], sql...)
	r.digits = append(r.digits[:0], f.Digits...)
	r.d, r.a, r.stripe = d, a, stripe
}

// wholeRuns reports whether digits bounds, in ascending order, whole runs
// of one or more decimal digits of sql, as answers relies on; an analyzer
// that names anything else gets no memo.
func wholeRuns(sql string, digits []int32) bool {
	if len(digits)%2 != 0 {
		return false
	}
	last := 0
	for k := 0; k < len(digits); k += 2 {
		start, end := int(digits[k]), int(digits[k+1])
		if start < last || end <= start || end > len(sql) || (start > 0 && isDigit(sql[start-1])) || (end < len(sql) && isDigit(sql[end])) {
			return false
		}
		for i := start; i < end; i++ {
			if !isDigit(sql[i]) {
				return false
			}
		}
		last = end
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
