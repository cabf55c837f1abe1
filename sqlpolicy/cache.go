package sqlpolicy

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// The decision cache maps (text, session generation, principal) to the
// shared (*Decision, *Access) of an earlier Check. Two kinds of entries
// share one byte budget:
//
//   - exact: keyed on the text as sent. A hit costs one maphash of the text
//     and one of the agent name, a map lookup and a string compare, and
//     allocates nothing.
//   - normalized: keyed on Analyzer.Normalize of the text, so texts that
//     differ only in literals share an entry. Only analyses that did not
//     depend on a literal (!Access.LiteralSensitive) are stored. An entry
//     may be marked as reachable by a fast form (FastNormalizer), see
//     entry.fastOK.
//
// Before either, a session's memo (RecentText) answers a text that
// differs from the last one the fast lookup answered in that session only
// in the digits of its integer literals, with that answer.
//
// Keys are 64-bit hashes; every hit compares the stored text, generation,
// agent and scope, so a hash collision is a miss, never a wrong answer.
// Each shard is a list bounded by its share of the byte budget, evicted
// in CLOCK order (second chance): a hit only marks its entry referenced,
// and eviction moves a referenced entry to the front once instead of
// dropping it. Hits thus write no list links (sessions hitting entries
// side by side would otherwise pass those cache lines between CPUs on
// every statement), and a recently used entry still outlives the unused
// ones. The counters live in the shards, under their locks, for the same
// reason.

type entryKind uint8

const (
	kindExact entryKind = iota + 1
	kindNorm
)

type entry struct {
	key   uint64
	kind  entryKind
	text  string
	gen   uint64
	agent string
	scope []Grant
	d     *Decision
	a     *Access
	size  int64
	ref   bool // hit since it was last at the front of the list
	// fastOK marks a normalized entry whose text is the fast form, with
	// literals fastLits (FastForm.Literals), of a text whose fast form was
	// seen to equal its normal form; only such entries answer getFast.
	fastOK   bool
	fastLits string

	prev, next *entry
}

type shard struct {
	mu      sync.Mutex
	m       map[uint64]*entry
	head    entry // sentinel: head.next is most recent, head.prev least
	bytes   int64
	maxSize int64

	hits, misses, evictions uint64
	// recentHits counts the answers of session memos (RecentText) made
	// from this shard's entries; atomic, as they take no lock.
	recentHits atomic.Uint64
}

type cache struct {
	seed   maphash.Seed
	shards []shard
	mask   uint64
	// shapes is a Bloom filter (two bits per shape) of the text shapes
	// (ShapeAnalyzer.Shape) normalized entries were stored for. A shape
	// not in it has no normalized entry, so the engine skips that lookup
	// and the parse it needs; evicted entries leave their bits set, which
	// costs the lookup, never a wrong answer.
	shapes    []atomic.Uint64
	shapeMask uint64
	// door is the exact level's doorkeeper: one bit per text (by its
	// exact key) that a normalized entry answered once. A text the
	// normalized level answers gets an exact entry only the second time
	// it is seen (and, when the fast level answered it, only a text of
	// minExactFirst bytes or more: a shorter one is looked up there
	// first), so a stream of texts that each appear once (a new
	// literal every statement) does not insert and evict an exact entry
	// per statement, nor push out entries that are used. The bits are
	// cleared after doorMax texts, which keeps false positives rare; a
	// false positive only stores an entry early, a cleared bit only
	// delays one.
	door    []atomic.Uint64
	doorN   atomic.Uint64
	doorMax uint64
}

// entryOverhead approximates the fixed cost of an entry: the struct, its map
// slot and list links.
const entryOverhead = 160

func newCache(maxBytes int64) *cache {
	n := 16
	if maxBytes < 4<<20 {
		n = 1
	}
	c := &cache{seed: maphash.MakeSeed(), shards: make([]shard, n), mask: uint64(n - 1)}
	// One bit per 32 bytes of budget: entries take several hundred bytes,
	// so the filter stays sparse (a few false positives in a thousand).
	bits := uint64(1 << 12)
	for bits < uint64(maxBytes/32) && bits < 1<<24 {
		bits <<= 1
	}
	c.shapes, c.shapeMask = make([]atomic.Uint64, bits/64), bits-1
	c.door, c.doorMax = make([]atomic.Uint64, bits/64), bits/16
	for i := range c.shards {
		s := &c.shards[i]
		s.m = make(map[uint64]*entry)
		s.head.next, s.head.prev = &s.head, &s.head
		s.maxSize = maxBytes / int64(n)
	}
	return c
}

func (c *cache) key(kind entryKind, text string, gen uint64, p *Principal) uint64 {
	return c.keyOf(maphash.String(c.seed, text), kind, gen, p)
}

// keyOf is key for a text that hashes (maphash) to h.
func (c *cache) keyOf(h uint64, kind entryKind, gen uint64, p *Principal) uint64 {
	h ^= (maphash.String(c.seed, p.Agent) + 0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9
	h ^= (gen + uint64(kind)) * 0x94d049bb133111eb
	if p.Scope != nil {
		h ^= c.scopeHash(p.Scope)
	}
	return h
}

func (c *cache) scopeHash(scope []Grant) uint64 {
	var mh maphash.Hash
	mh.SetSeed(c.seed)
	for _, g := range scope {
		mh.WriteString(string(g.Verb))
		mh.WriteByte(0)
		for _, t := range g.Tables {
			mh.WriteString(t)
			mh.WriteByte(1)
		}
		mh.WriteByte(2)
	}
	return mh.Sum64() | 1 // never 0, so a non-nil empty scope differs from nil
}

func (c *cache) shapeBits(shape uint64) (uint64, uint64) {
	return shape & c.shapeMask, (shape >> 32) & c.shapeMask
}

func (c *cache) seenShape(shape uint64) bool {
	a, b := c.shapeBits(shape)
	return c.shapes[a/64].Load()&(1<<(a%64)) != 0 && c.shapes[b/64].Load()&(1<<(b%64)) != 0
}

func (c *cache) addShape(shape uint64) {
	a, b := c.shapeBits(shape)
	c.shapes[a/64].Or(1 << (a % 64))
	c.shapes[b/64].Or(1 << (b % 64))
}

// admit reports whether the text of exact key k was seen before (see
// door), and notes it as seen.
func (c *cache) admit(k uint64) bool {
	bit := (k ^ k>>29) & c.shapeMask
	w := &c.door[bit/64]
	m := uint64(1) << (bit % 64)
	if w.Load()&m != 0 {
		return true
	}
	w.Or(m)
	if c.doorN.Add(1)%c.doorMax == 0 {
		for i := range c.door {
			c.door[i].Store(0)
		}
	}
	return false
}

func (c *cache) shardOf(k uint64) *shard { return &c.shards[c.shardIndex(k)] }

func (c *cache) shardIndex(k uint64) int { return int((k >> 59) & c.mask) }

func sameScope(a, b []Grant) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Verb != b[i].Verb || len(a[i].Tables) != len(b[i].Tables) {
			return false
		}
		for j := range a[i].Tables {
			if a[i].Tables[j] != b[i].Tables[j] {
				return false
			}
		}
	}
	return true
}

// getNorm is getKey for the normalized entry of text.
func (c *cache) getNorm(text string, gen uint64, p *Principal, mark *FastForm) (*Decision, *Access, bool) {
	return c.getKey(c.key(kindNorm, text, gen, p), kindNorm, text, gen, p, mark)
}

// getFast looks up the normalized entry whose text is the fast form
// f.Text, answering only from an entry marked (fastOK) with f's
// literals; stripe is the index of the entry's shard. A miss is not
// counted: the caller goes on to the normalized lookup, which counts it.
func (c *cache) getFast(f *FastForm, gen uint64, p *Principal) (d *Decision, a *Access, stripe int, ok bool) {
	k := c.keyOf(maphash.Bytes(c.seed, f.Text), kindNorm, gen, p)
	stripe = c.shardIndex(k)
	s := &c.shards[stripe]
	s.mu.Lock()
	e := s.m[k]
	if e == nil || !e.fastOK || e.kind != kindNorm || e.gen != gen || e.text != string(f.Text) ||
		e.fastLits != string(f.Literals) || e.agent != p.Agent || !sameScope(e.scope, p.Scope) {
		s.mu.Unlock()
		return nil, nil, 0, false
	}
	if !e.ref {
		e.ref = true
	}
	s.hits++
	d, a = e.d, e.a
	s.mu.Unlock()
	return d, a, stripe, true
}

// getKey looks up the entry of key k, kind and text. When mark is not nil
// (the fast form of the text decided, found equal to the normalized text
// looked up) and the entry found is not marked yet, it marks it (see
// entry.fastOK).
func (c *cache) getKey(k uint64, kind entryKind, text string, gen uint64, p *Principal, mark *FastForm) (*Decision, *Access, bool) {
	s := c.shardOf(k)
	s.mu.Lock()
	e := s.m[k]
	if e == nil || e.kind != kind || e.gen != gen || e.text != text || e.agent != p.Agent || !sameScope(e.scope, p.Scope) {
		s.misses++
		s.mu.Unlock()
		return nil, nil, false
	}
	if !e.ref {
		e.ref = true
	}
	if mark != nil && !e.fastOK {
		e.fastOK, e.fastLits = true, string(mark.Literals)
	}
	s.hits++
	d, a := e.d, e.a
	s.mu.Unlock()
	return d, a, true
}

// putNorm stores a normalized entry; mark, when not nil, is the fast
// form of the text decided, found equal to text (see entry.fastOK).
func (c *cache) putNorm(text string, gen uint64, p *Principal, d *Decision, a *Access, valueSize int64, mark *FastForm) {
	e := c.newEntry(c.key(kindNorm, text, gen, p), kindNorm, text, gen, p, d, a, valueSize)
	if e == nil {
		return
	}
	if mark != nil {
		e.fastOK, e.fastLits = true, string(mark.Literals)
	}
	c.insert(e)
}

// putKey stores an entry under key k.
func (c *cache) putKey(k uint64, kind entryKind, text string, gen uint64, p *Principal, d *Decision, a *Access, valueSize int64) {
	if e := c.newEntry(k, kind, text, gen, p, d, a, valueSize); e != nil {
		c.insert(e)
	}
}

// newEntry returns an entry to insert, or nil when it would not fit.
func (c *cache) newEntry(k uint64, kind entryKind, text string, gen uint64, p *Principal, d *Decision, a *Access, valueSize int64) *entry {
	size := entryOverhead + int64(len(text)) + int64(len(p.Agent)) + scopeSize(p.Scope) + valueSize
	if size > c.shardOf(k).maxSize {
		return nil
	}
	return &entry{key: k, kind: kind, text: text, gen: gen, agent: p.Agent, scope: cloneScope(p.Scope), d: d, a: a, size: size}
}

// insert adds e, replacing an entry of its key, and evicts down to the
// shard's budget.
func (c *cache) insert(e *entry) {
	k, size := e.key, e.size
	s := c.shardOf(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.m[k]; old != nil {
		s.unlink(old)
		s.bytes -= old.size
	}
	s.m[k] = e
	s.pushFront(e)
	s.bytes += size
	for s.bytes > s.maxSize {
		last := s.head.prev
		if last == &s.head {
			break
		}
		s.unlink(last)
		if last.ref || last == e && len(s.m) > 1 {
			// Second chance: a referenced entry moves to the front, its
			// mark cleared (so the loop ends), and the new entry is not
			// the one dropped while older ones remain.
			last.ref = false
			s.pushFront(last)
			continue
		}
		delete(s.m, last.key)
		s.bytes -= last.size
		s.evictions++
	}
}

func (s *shard) unlink(e *entry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

func (s *shard) pushFront(e *entry) {
	e.next = s.head.next
	e.prev = &s.head
	s.head.next.prev = e
	s.head.next = e
}

func (c *cache) stats() CacheStats {
	var st CacheStats
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.Hits += s.hits + s.recentHits.Load()
		st.Misses += s.misses
		st.Evictions += s.evictions
		st.Entries += len(s.m)
		st.Bytes += s.bytes
		s.mu.Unlock()
	}
	return st
}

func cloneScope(scope []Grant) []Grant {
	if scope == nil {
		return nil
	}
	out := make([]Grant, len(scope))
	for i, g := range scope {
		out[i] = Grant{Verb: g.Verb, Tables: append([]string(nil), g.Tables...)}
	}
	return out
}

func scopeSize(scope []Grant) int64 {
	var n int64
	for _, g := range scope {
		n += 48 + int64(len(g.Verb))
		for _, t := range g.Tables {
			n += 16 + int64(len(t))
		}
	}
	return n
}

// accessSize approximates the memory an Access and its Decision hold.
func accessSize(a *Access, d *Decision) int64 {
	n := int64(64)
	if a != nil {
		for i := range a.Statements {
			n += statementSize(&a.Statements[i])
		}
	}
	if d != nil {
		n += 160 + int64(len(d.Rule)+len(d.Agent)+len(d.Role)+len(d.Message)+len(d.Detail)+len(d.Hint))
		for _, r := range d.Reasons {
			n += 200 + int64(len(r.Table)+len(r.Column)+len(r.Label)+len(r.Func)+len(r.Setting)+len(r.Rule)+len(r.Detail))
		}
	}
	return n
}

func statementSize(st *Statement) int64 {
	if st == nil {
		return 0
	}
	n := int64(320 + len(st.Command) + len(st.PrepareName) + len(st.ExecuteName))
	for _, t := range st.Tables {
		n += 80 + int64(len(t.Rel.Schema)+len(t.Rel.Name)+len(t.Via.Schema)+len(t.Via.Name))
	}
	for _, c := range st.Columns {
		n += 96 + int64(len(c.Rel.Schema)+len(c.Rel.Name)+len(c.Column)+len(c.Via.Schema)+len(c.Via.Name))
	}
	for _, f := range st.Functions {
		n += 32 + int64(len(f.Schema)+len(f.Name))
	}
	for _, s := range st.Settings {
		n += 48 + int64(len(s.Name)+len(s.Value))
	}
	for _, p := range st.Problems {
		n += 128 + int64(len(p.Detail)+len(p.Column)+len(p.Func)+len(p.Setting))
	}
	for _, d := range st.Deallocate {
		n += 16 + int64(len(d))
	}
	return n + statementSize(st.Prepared) + statementSize(st.Explained)
}
