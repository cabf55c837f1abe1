package mycorpus_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/testmariadb"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// mutation wraps a SELECT in a construct whose name resolution differs
// from the original's. %[1]s is the SELECT (on lines of its own, so a
// trailing comment cannot swallow the wrapper), %[2]s a WITH column list
// of as many names as it has columns.
type mutation struct {
	name, format string
}

var mutations = []mutation{
	{"derived", "SELECT * FROM (\n%[1]s\n) AS kh_d"},
	{"derived-where", "SELECT kh_d.* FROM (\n%[1]s\n) AS kh_d WHERE 1 = 1 ORDER BY 1"},
	{"cte-column-list", "WITH kh_c (%[2]s) AS (\n%[1]s\n) SELECT * FROM kh_c"},
	{"cte-twice", "WITH kh_c AS (\n%[1]s\n) SELECT kh_a.* FROM kh_c kh_a JOIN kh_c kh_b ON 1 = 1 LIMIT 10"},
	{"natural-self", "SELECT * FROM (\n%[1]s\n) AS kh_l NATURAL JOIN (\n%[1]s\n) AS kh_r"},
	{"using-orders", "SELECT * FROM orders kh_o JOIN (\n%[1]s\n) AS kh_d USING (id)"},
	{"natural-customers", "SELECT * FROM (\n%[1]s\n) AS kh_d NATURAL RIGHT JOIN (SELECT id, name FROM customers) AS kh_c"},
	{"union", "(\n%[1]s\n) UNION (\n%[1]s\n)"},
	{"union-all-orders", "SELECT * FROM (\n%[1]s\n) AS kh_u UNION ALL SELECT * FROM (\n%[1]s\n) AS kh_v"},
	{"exists-customers", "SELECT kh_c.id FROM customers kh_c WHERE EXISTS (\n%[1]s\n)"},
	{"exists-orders", "SELECT kh_o.id FROM orders kh_o WHERE NOT EXISTS (\n%[1]s\n)"},
	{"scalar-count", "SELECT (SELECT COUNT(*) FROM (\n%[1]s\n) AS kh_s) AS n FROM orders kh_o"},
	{"in-subquery", "SELECT kh_c.name FROM customers kh_c WHERE kh_c.id IN (SELECT 1 FROM (\n%[1]s\n) AS kh_q)"},
	{"insert-select", "INSERT INTO orders (customer_id, product_id, total) SELECT 1, 1, 0 FROM (\n%[1]s\n) AS kh_i LIMIT 1"},
}

// qualifierRe finds the qualifier of a qualified name (`c.` in c.name,
// c.*), naively: it does not know strings or comments, which only makes
// some variants fail.
var qualifierRe = regexp.MustCompile("\\b([A-Za-z_][A-Za-z0-9_]*)\\.([A-Za-z_`*])")

// caseFlipped upper-cases every qualifier of q (not the database name
// db) and runs q as a correlated subquery (EXISTS: a derived table would
// see no outer level) under a customers item of each flipped name. Under
// lower_case_table_names=0 MariaDB compares aliases byte for byte, so a
// flipped qualifier passes over the item it named to the outer
// customers: a resolver that matched it without letter case would bind
// it to the inner item.
func caseFlipped(q, db string) (string, bool) {
	var names []string
	text := qualifierRe.ReplaceAllStringFunc(q, func(m string) string {
		sub := qualifierRe.FindStringSubmatch(m)
		if strings.EqualFold(sub[1], db) {
			return m
		}
		up := strings.ToUpper(sub[1])
		if up == sub[1] {
			return m
		}
		if !slices.Contains(names, up) {
			names = append(names, up)
		}
		return up + "." + sub[2]
	})
	if len(names) == 0 {
		return "", false
	}
	from := make([]string, len(names))
	for i, n := range names {
		from[i] = "customers AS " + n
	}
	return "SELECT COUNT(*) FROM " + strings.Join(from, ", ") + " WHERE EXISTS (\n" + text + "\n)", true
}

// seedSelects are the corpus's allowed single SELECT texts, with their
// column counts as MariaDB reports them.
type seed struct {
	id   string
	sql  string
	cols int
}

func seedSelects(t testing.TB, s *shop) []seed {
	cases, err := loadCases()
	require.NoError(t, err)
	var out []seed
	for _, c := range cases {
		if c.Expect != "allow" || len(c.SQL) != 1 {
			continue
		}
		text := strings.TrimRight(strings.TrimSpace(testmariadb.Rename(c.SQL[0], s.name)), ";")
		a := s.an.Analyze(text, nil)
		if len(a.Statements) != 1 || a.Statements[0].Verb != sqlpolicy.VerbSelect || a.Statements[0].Command != "SELECT" ||
			!a.Statements[0].ReturnsRows || strings.Contains(strings.ToUpper(text), " INTO ") {
			continue
		}
		n, err := columnCount(s, text)
		if err != nil || n == 0 {
			continue
		}
		out = append(out, seed{id: c.ID, sql: text, cols: n})
	}
	return out
}

// columnCount runs text as the policy's user and returns its column count.
func columnCount(s *shop, text string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := s.userDB.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	rows, err := conn.QueryContext(ctx, text)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	return len(cols), err
}

func colList(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("kh_c%d", i+1)
	}
	return strings.Join(names, ", ")
}

// diffStats counts what the differential did.
type diffStats struct {
	mutants, allowed, ran, otherErrors atomic.Int64
}

// checkMutant decides text; when keyhole allows it, MariaDB as the
// policy's user must not refuse it with a privilege error.
func checkMutant(t *testing.T, s *shop, st *diffStats, label, text string) {
	st.mutants.Add(1)
	d, _ := s.engine.Check(sqlpolicy.Principal{Agent: agent}, text, s.engine.NewSession())
	if !d.Allowed() {
		return
	}
	st.allowed.Add(1)
	errno, msg, err := mariaOutcome(s.userDB, []string{text})
	require.NoError(t, err, label)
	if errno == 0 {
		st.ran.Add(1)
		return
	}
	if !assert.False(t, privilegeErrnos[errno], "%s: keyhole allows it, MariaDB's grants refuse it: %d %s\n  sql: %s", label, errno, msg, text) {
		return
	}
	st.otherErrors.Add(1)
}

// TestDifferential wraps every allowed SELECT of the corpus in each
// mutation and checks that whatever keyhole allows runs without a
// privilege error as a MariaDB user holding exactly the policy's grants.
func TestDifferential(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	seeds := seedSelects(t, s)
	require.NotEmpty(t, seeds)
	var st diffStats
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, sd := range seeds {
		for _, m := range mutations {
			text := fmt.Sprintf(m.format, sd.sql, colList(sd.cols))
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				checkMutant(t, s, &st, sd.id+"/"+m.name, text)
			}()
		}
	}
	for _, sd := range seeds {
		text, ok := caseFlipped(sd.sql, s.name)
		if !ok {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			checkMutant(t, s, &st, sd.id+"/case-flip", text)
		}()
	}
	wg.Wait()
	t.Logf("differential: %d seeds, %d mutants, %d allowed by keyhole, %d ran as the policy's user, %d failed with a non-privilege error (ambiguous or unknown columns the wrapper introduced)",
		len(seeds), st.mutants.Load(), st.allowed.Load(), st.ran.Load(), st.otherErrors.Load())
	assert.Positive(t, st.ran.Load())
}

// FuzzDifferential composes mutations of the corpus's allowed SELECTs
// (ops picks a seed and up to four nested wrappers) and checks the same
// property as TestDifferential. `make fuzz` runs it.
func FuzzDifferential(f *testing.F) {
	f.Add(uint16(0), []byte{0})
	f.Add(uint16(3), []byte{2, 4})
	f.Add(uint16(7), []byte{9, 0, 11})
	f.Add(uint16(11), []byte{13, 5, 7, 1})
	f.Add(uint16(0x8005), []byte{3})
	// The fixture is made before f.Fuzz (Helper and Cleanup belong to f);
	// every fuzz worker process makes its own.
	s := newShopFor(f)
	seeds := seedSelects(f, s)
	var st diffStats
	f.Cleanup(func() {
		f.Logf("differential fuzz: %d mutants, %d allowed, %d ran, %d non-privilege errors",
			st.mutants.Load(), st.allowed.Load(), st.ran.Load(), st.otherErrors.Load())
	})
	f.Fuzz(func(t *testing.T, pick uint16, ops []byte) {
		if len(seeds) == 0 {
			t.Skip("no seeds")
		}
		sd := seeds[int(pick)%len(seeds)]
		text, cols := sd.sql, sd.cols
		if len(ops) > 4 {
			ops = ops[:4]
		}
		for _, op := range ops {
			m := mutations[int(op)%len(mutations)]
			text = fmt.Sprintf(m.format, text, colList(cols))
			if m.name == "insert-select" {
				break
			}
			if n, err := columnCount(s, text); err == nil {
				cols = n
			} else {
				break
			}
		}
		if pick&0x8000 != 0 {
			// The high bit of pick also flips the qualifiers' letter case.
			if flipped, ok := caseFlipped(text, s.name); ok {
				text = flipped
			}
		}
		checkMutant(t, s, &st, sd.id, text)
	})
}

// literalRe finds string and number literals (naively: it does not know
// comments or identifiers, which only makes some variants unparseable).
var literalRe = regexp.MustCompile(`'[^'\\]*'|"[^"\\]*"|\b\d+\b`)

// TestCacheDifferential checks the normalized-text cache against the
// uncached engine: for every corpus text T and each variant T' that
// replaces one literal with another (a labelled column's name among them,
// since a literal can be an alias), deciding T and then T' through one
// cached engine must give T' the decision an engine without a cache gives
// it. A normalizer that replaced a literal the analysis depends on would
// let T's allow answer T'.
func TestCacheDifferential(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	cases, err := loadCases()
	require.NoError(t, err)
	fresh := sqlpolicy.NewEngine(s.policy, s.cat, s.an, sqlpolicy.EngineOptions{CacheBytes: -1})
	p := sqlpolicy.Principal{Agent: agent}
	replacements := []string{"'email'", "'ssn'", "'x'", `"phone"`, "2", "7"}
	pairs, mismatches, syntax := 0, 0, 0
	for _, c := range cases {
		if len(c.SQL) != 1 {
			continue
		}
		text := testmariadb.Rename(c.SQL[0], s.name)
		locs := literalRe.FindAllStringIndex(text, 8)
		for _, loc := range locs {
			for _, r := range replacements {
				variant := text[:loc[0]] + r + text[loc[1]:]
				if variant == text {
					continue
				}
				// A fresh cached engine per pair: T's entry is the only one.
				cached := sqlpolicy.NewEngine(s.policy, s.cat, s.an, sqlpolicy.EngineOptions{})
				cached.Check(p, text, cached.NewSession())
				got, _ := cached.Check(p, variant, cached.NewSession())
				want, _ := fresh.Check(p, variant, fresh.NewSession())
				pairs++
				if got.Effect != want.Effect && hasReason(want, string(sqlpolicy.ProblemUnparseable)) {
					// The literal's kind changed (a string where only a
					// number parses, LIMIT 'x'): harmless when MariaDB
					// refuses the text as a syntax error too.
					errno, _, err := mariaOutcome(s.userDB, []string{variant})
					require.NoError(t, err)
					if errno == 1064 {
						syntax++
						continue
					}
				}
				if !assert.Equal(t, want.Effect, got.Effect, "%s: after %q, the cache decides %q differently from a fresh analysis (%s)", c.ID, text, variant, reasonsJSON(want)) {
					mismatches++
				}
			}
		}
	}
	t.Logf("cache differential: %d pairs, %d mismatches, %d variants both parsers refuse", pairs, mismatches, syntax)
	assert.Positive(t, pairs)
}
