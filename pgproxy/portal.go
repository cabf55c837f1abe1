package pgproxy

import (
	"sync"
	"sync/atomic"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// objState is what keyhole knows of a prepared statement or portal on the
// server. The client goroutine creates the object (pending) when it
// forwards the message that creates it; the upstream goroutine records the
// server's answer. A name is used only while its object is pending or
// open: the server then holds exactly what keyhole decided under it.
type objState int32

const (
	objPending objState = iota // the creating message is on its way
	objOpen                    // the server confirmed it
	// objFailed: the server rejected or skipped the creating message. It
	// still holds whatever it had under the name, which is not this text,
	// so the name is refused until the client creates it again.
	objFailed
	// objClosed: the server dropped it (Close, CLOSE, transaction end).
	objClosed
)

// auditText is the audit form of a text (literals redacted, or raw),
// computed once per text: Redact parses the text again.
type auditText struct {
	once        sync.Once
	text, print string
}

func (a *auditText) get(c *conn, sql string, dec *sqlpolicy.Decision) (text, print string) {
	a.once.Do(func() {
		if dec.Redacted != "" {
			a.text, a.print = dec.Redacted, dec.Fingerprint
			return
		}
		a.text, a.print = c.srv.cfg.Decider.Redact(sql)
	})
	return a.text, a.print
}

// prepared is a protocol-level prepared statement as keyhole decided it.
// Denied names are kept too, so that a later Bind of the name is refused
// instead of reaching an older upstream statement of the same name.
type prepared struct {
	name    string
	sql     string
	dec     *sqlpolicy.Decision
	access  *sqlpolicy.Access
	allowed bool
	// stamp: what dec was made under (conn.stillStands).
	stamp stamp
	state atomic.Int32 // objState
	text  auditText
	origin
}

// origin is where a statement or portal came from, for the client
// goroutine's settle.
type origin struct {
	syncs   uint64 // conn.syncs when it was created
	byQuery bool   // created by a DECLARE in a simple Query
	// shadows: an older object of the name may still exist upstream.
	shadows bool
	// closing: the client closed it; the name is gone for the client
	// even if the server skips the Close.
	closing bool
}

// live reports whether the server may hold the object.
func live(s *atomic.Int32) bool {
	st := objState(s.Load())
	return st == objPending || st == objOpen
}

// portal is a protocol portal (Bind) or a cursor a DECLARE opened: both
// are portals to the server, which the client may Describe, Execute with
// a row limit and Close.
type portal struct {
	name   string
	sql    string // the text whose rows it returns (the Parse's or the DECLARE's)
	stmt   *prepared
	dec    *sqlpolicy.Decision
	access *sqlpolicy.Access
	text   *auditText
	// cursor: opened by DECLARE; hold: DECLARE ... WITH HOLD.
	cursor, hold bool
	maxRows      int64 // the role's max_rows when it was decided
	// stamp: what dec was made under; a portal outlives it when the
	// policy changes (conn.portalStands). Client goroutine only.
	stamp stamp
	state atomic.Int32 // objState
	origin

	// Upstream goroutine only.
	// stmtRows counts the current statement's rows across Executes, for
	// max_rows; committed: a hold cursor whose transaction committed
	// (it survives the transaction's end); depth: how many savepoints of
	// the current transaction were held when it opened (a ROLLBACK TO the
	// depth-th or a later one drops it).
	stmtRows  int64
	committed bool
	depth     int
}

// portalTracker follows which portals the server holds, from what it
// answers: the upstream goroutine's record of portal lifetimes, so that a
// name keyhole lets the client use is never one the server has dropped
// and could hold again for something keyhole did not decide. Protocol
// portals live until Close, a CLOSE, or their transaction's end; cursors
// the same unless WITH HOLD, which survive their transaction's COMMIT.
type portalTracker struct {
	// unnamed is the unnamed portal, which most drivers Bind every
	// statement to: a slot of its own, no map operation per statement.
	unnamed *portal
	live    map[string]*portal // named portals
	// savepoints are the savepoints the server holds in the current
	// transaction block, oldest first, by name: SAVEPOINT adds one (a
	// name again shadows the older), RELEASE name removes the newest of
	// that name and those after it, ROLLBACK TO name those after it (it
	// stays), the block's end all. A portal opened while n are held
	// (depth n) is dropped by a ROLLBACK TO the n-th or a later one; one
	// opened while none is held, by none.
	savepoints []string
	// namesLost: a SAVEPOINT or RELEASE of this block came without its
	// name (its statement was not analyzed here), so savepoints may not
	// be the server's: until the block ends, a ROLLBACK TO drops every
	// portal opened after any savepoint, and a RELEASE lowers no portal's
	// depth until none can be held (at worst the client is refused a
	// portal the server still holds, never the other way round).
	namesLost bool
}

// open records that the server holds p (replacing the unnamed portal, or
// a dropped one of the same name).
func (t *portalTracker) open(p *portal) {
	var old *portal
	if p.name == "" {
		old, t.unnamed = t.unnamed, p
	} else {
		if t.live == nil {
			t.live = make(map[string]*portal)
		}
		old = t.live[p.name]
		t.live[p.name] = p
	}
	if old != nil && old != p {
		old.state.Store(int32(objClosed))
	}
	p.depth = len(t.savepoints)
	p.state.CompareAndSwap(int32(objPending), int32(objOpen))
}

func (t *portalTracker) close(name string) {
	if name == "" {
		if p := t.unnamed; p != nil {
			p.state.Store(int32(objClosed))
			t.unnamed = nil
		}
		return
	}
	if p := t.live[name]; p != nil {
		p.state.Store(int32(objClosed))
		delete(t.live, name)
	}
}

// closeIf closes every live portal drop reports true for.
func (t *portalTracker) closeIf(drop func(*portal) bool) {
	if p := t.unnamed; p != nil && drop(p) {
		p.state.Store(int32(objClosed))
		t.unnamed = nil
	}
	if len(t.live) == 0 {
		return
	}
	for name, p := range t.live {
		if drop(p) {
			p.state.Store(int32(objClosed))
			delete(t.live, name)
		}
	}
}

func (t *portalTracker) closeAll() { t.closeIf(func(*portal) bool { return true }) }

// commit: non-holdable portals end with the transaction; hold cursors
// are materialized and live on.
func (t *portalTracker) commit() {
	t.closeIf(func(p *portal) bool {
		if p.hold {
			p.committed, p.depth = true, 0
			return false
		}
		return true
	})
	t.endBlock()
}

// endBlock forgets the block's savepoints.
func (t *portalTracker) endBlock() { t.savepoints, t.namesLost = t.savepoints[:0], false }

// savepoint follows a SAVEPOINT name ("": its name is not known).
func (t *portalTracker) savepoint(name string) {
	t.namesLost = t.namesLost || name == ""
	t.savepoints = append(t.savepoints, name)
}

// newest is the index of the newest savepoint held named name, -1 for
// none (or an unknown name).
func (t *portalTracker) newest(name string) int {
	if name == "" || t.namesLost {
		return -1
	}
	for i := len(t.savepoints) - 1; i >= 0; i-- {
		if t.savepoints[i] == name {
			return i
		}
	}
	return -1
}

// release follows a RELEASE name: the savepoint and those after it go,
// and the portals opened inside them belong to the level it was set at,
// out of reach of a ROLLBACK TO it (pgJDBC's autosave with
// cleanupSavepoints releases its savepoint after every statement).
func (t *portalTracker) release(name string) {
	i := t.newest(name)
	if i < 0 {
		// At least one goes; which, is not known.
		t.namesLost = true
		i = max(len(t.savepoints)-1, 0)
	}
	t.savepoints = t.savepoints[:i]
	if t.namesLost && i > 0 {
		return // depths stay: a later ROLLBACK TO drops every depth > 0
	}
	t.eachLive(func(p *portal) { p.depth = min(p.depth, i) })
}

// rollback: every portal of the transaction ends, hold cursors too;
// hold cursors of earlier, committed transactions live on.
func (t *portalTracker) rollback() {
	t.closeIf(func(p *portal) bool { return !p.committed })
	t.endBlock()
}

// rollbackToSavepoint follows a ROLLBACK TO name: the portals opened
// after that savepoint was set end (the server drops what the undone
// subtransactions created), and the savepoints after it go; it stays.
// Without the name, every portal opened after any savepoint is dropped.
func (t *portalTracker) rollbackToSavepoint(name string) {
	i := t.newest(name)
	if i < 0 {
		t.namesLost = true
		t.closeIf(func(p *portal) bool { return p.depth > 0 && !p.committed })
		return
	}
	t.savepoints = t.savepoints[:i+1]
	t.closeIf(func(p *portal) bool { return p.depth > i && !p.committed })
}

// eachLive calls f for every live portal.
func (t *portalTracker) eachLive(f func(*portal)) {
	if p := t.unnamed; p != nil {
		f(p)
	}
	for _, p := range t.live {
		f(p)
	}
}

// idle is called at a ReadyForQuery with status 'I': no transaction is
// open, so the block's implicit transaction (if any) has ended, committed
// unless the block failed.
func (t *portalTracker) idle(failed bool) {
	if failed {
		t.rollback()
	} else {
		t.commit()
	}
}

// nameTable is the client goroutine's prepared statements (or portals) by
// name. The unnamed one, which drivers use for most statements (pgbench's
// prepared mode Binds every one to the unnamed portal), has a slot of its
// own, and the table remembers the named object it found last (drivers
// Bind one statement again and again): neither costs a map lookup per
// message.
type nameTable[T tableEntry] struct {
	unnamed T
	named   map[string]T
	// last is the zero T or named[last.entryName()].
	last T
}

// tableEntry is what a nameTable holds: *prepared or *portal.
type tableEntry interface {
	comparable
	entryName() string
	entryClosed() bool
}

func (p *prepared) entryName() string { return p.name }
func (p *prepared) entryClosed() bool { return objState(p.state.Load()) == objClosed }
func (p *portal) entryName() string   { return p.name }
func (p *portal) entryClosed() bool   { return objState(p.state.Load()) == objClosed }

// get returns the object of name (which may point into the read buffer),
// or the zero T.
func (t *nameTable[T]) get(name []byte) T {
	var none T
	if len(name) == 0 {
		return t.unnamed
	}
	if p := t.last; p != none && p.entryName() == string(name) {
		return p
	}
	p := t.named[string(name)]
	if p != none {
		t.last = p
	}
	return p
}

// set records p under its name and returns what the name held.
func (t *nameTable[T]) set(p T) (old T) {
	name := p.entryName()
	if name == "" {
		old, t.unnamed = t.unnamed, p
		return old
	}
	if t.named == nil {
		t.named = make(map[string]T)
	}
	old = t.named[name]
	t.named[name] = p
	t.last = p
	return old
}

// purge drops the closed named objects.
func (t *nameTable[T]) purge() {
	var none T
	for name, q := range t.named {
		if q.entryClosed() {
			delete(t.named, name)
		}
	}
	if t.last != none && t.named[t.last.entryName()] != t.last {
		t.last = none
	}
}
