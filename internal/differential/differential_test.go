package differential_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/corpus"
	"github.com/keyholedb/keyhole/internal/differential"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// config is the size of a run, from the environment: a short pass by
// default (`make test`), as long as asked for in `make fuzz`.
type config struct {
	statements int    // generated and mutated statements per suite
	sqlsmith   int    // sqlsmith statements per suite
	seed       uint64 // KEYHOLE_DIFF_SEED reproduces a run
}

func loadConfig(t *testing.T) config {
	t.Helper()
	c := config{statements: 1200, sqlsmith: 60, seed: uint64(time.Now().UnixNano())}
	for name, dst := range map[string]*int{"KEYHOLE_DIFF_STATEMENTS": &c.statements, "KEYHOLE_DIFF_SQLSMITH": &c.sqlsmith} {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			require.NoError(t, err, name)
			*dst = n
		}
	}
	if v := os.Getenv("KEYHOLE_DIFF_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "KEYHOLE_DIFF_SEED")
		c.seed = n
	}
	return c
}

// TestDifferential decides generated statements with the engine and runs
// every one it allows as the policy-equivalent role: Postgres must not
// refuse any of them for lack of a privilege, and none may read a labelled
// column.
func TestDifferential(t *testing.T) {
	cfg := loadConfig(t)
	t.Logf("seed %d (KEYHOLE_DIFF_SEED=%d reproduces this run), %d statements and %d from sqlsmith per suite",
		cfg.seed, cfg.seed, cfg.statements, cfg.sqlsmith)
	for _, su := range corpus.Suites {
		t.Run(su.Name, func(t *testing.T) {
			runSuite(t, su, cfg)
		})
	}
}

// statement is one input and where it came from.
type statement struct {
	source string
	sql    string
}

// finding is an allowed statement Postgres refused, or one reading
// labelled data.
type finding struct {
	statement
	why string
}

// tally counts what happened to the statements of one source.
type tally struct {
	total, allowed, ran, pgOK int
	pgErrors                  map[string]int    // SQLSTATE of allowed statements Postgres rejected
	denials                   map[string]int    // first reason of each denial
	examples                  map[string]string // an allowed statement per SQLSTATE, for -v
}

type results struct {
	mu       sync.Mutex
	bySource map[string]*tally
	findings []finding
}

func (r *results) add(s statement, d *sqlpolicy.Decision, ran bool, code string, f *finding) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ta := r.bySource[s.source]
	if ta == nil {
		ta = &tally{pgErrors: map[string]int{}, denials: map[string]int{}, examples: map[string]string{}}
		r.bySource[s.source] = ta
	}
	ta.total++
	if d.Allowed() {
		ta.allowed++
	} else if len(d.Reasons) > 0 {
		why := string(d.Reasons[0].Code)
		if d.Reasons[0].Problem != "" {
			why += "/" + string(d.Reasons[0].Problem)
		}
		ta.denials[why]++
	}
	if ran {
		ta.ran++
		if code == "" {
			ta.pgOK++
		} else {
			ta.pgErrors[code]++
			if _, ok := ta.examples[code]; !ok {
				ta.examples[code] = s.sql
			}
		}
	}
	if f != nil {
		r.findings = append(r.findings, *f)
	}
}

func runSuite(t *testing.T, su corpus.Suite, cfg config) {
	shop := corpus.NewShop(t, su)
	pol, _, err := sqlpolicy.LoadPolicyFile(fixture.Path(t, su.Policy), shop.Cat)
	require.NoError(t, err)
	an := pganalyze.New(shop.Cat, pganalyze.Options{})
	eng := sqlpolicy.NewEngine(pol, shop.Cat, an, sqlpolicy.EngineOptions{})
	p := sqlpolicy.Principal{Agent: su.Agent}

	var smith []string
	if cfg.sqlsmith > 0 {
		smith = sqlsmith(t, shop.DB.DSN, cfg.sqlsmith, cfg.seed)
	}
	seeds := corpusSelects(t, su)
	require.NotEmpty(t, seeds, "corpus SELECT cases to mutate")

	in := make(chan statement)
	go func() {
		defer close(in)
		produce(in, cfg, shopTables(shop.Cat), seeds, smith)
	}()

	res := &results{bySource: map[string]*tally{}}
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker(t, shop.RoleDSN, eng, p, in, res)
		}()
	}
	wg.Wait()

	report(t, su, res)
}

// produce sends the generated, mutated and sqlsmith statements.
func produce(in chan<- statement, cfg config, tables []differential.Table, seeds, smith []string) {
	r := rand.New(rand.NewPCG(cfg.seed, 1))
	gen := differential.NewGenerator(cfg.seed, tables, "customers")
	var pool []string
	for _, t := range tables {
		pool = append(pool, t.Cols...)
	}
	nGen := cfg.statements * 60 / 100
	for i := range nGen {
		if i%3 == 0 {
			in <- statement{source: "generator", sql: gen.Statement()}
		} else {
			in <- statement{source: "scoping", sql: gen.Scoping()}
		}
	}
	sent := 0
	for sent < cfg.statements-nGen {
		q := seeds[r.IntN(len(seeds))]
		variants := append([]string{q}, differential.Rescope(q, r, pool, 2)...)
		for _, v := range variants {
			for _, w := range differential.Wrap(v, "customers") {
				src := "corpus-wrap"
				if v != q {
					src = "corpus-rescope"
				}
				in <- statement{source: src, sql: w}
				if sent++; sent >= cfg.statements-nGen {
					break
				}
			}
			if sent >= cfg.statements-nGen {
				break
			}
		}
	}
	// Every seed once with its qualifiers' letter case flipped: cheap,
	// and the rule (a quoted qualifier keeps its case) is all or nothing.
	for _, q := range seeds {
		if f, ok := differential.CaseFlipped(q, "customers"); ok {
			in <- statement{source: "corpus-caseflip", sql: f}
		}
	}
	for _, s := range smith {
		in <- statement{source: "sqlsmith", sql: s}
	}
}

// runnable verbs are run in Postgres; others (transaction control, COPY,
// settings) would disturb the check's own transaction or wait for input.
var runnable = map[sqlpolicy.Verb]bool{
	sqlpolicy.VerbSelect: true, sqlpolicy.VerbInsert: true, sqlpolicy.VerbUpdate: true,
	sqlpolicy.VerbDelete: true, sqlpolicy.VerbMerge: true,
}

func worker(t *testing.T, dsn string, eng *sqlpolicy.Engine, p sqlpolicy.Principal, in <-chan statement, res *results) {
	var conn *pgconn.PgConn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for s := range in {
		d, a := eng.Check(p, s.sql, eng.NewSession())
		if !d.Allowed() {
			res.add(s, d, false, "", nil)
			continue
		}
		if leaks := corpus.ForbiddenReads(a); len(leaks) > 0 {
			res.add(s, d, false, "", &finding{s, fmt.Sprintf("allowed access reads labelled data %v", leaks)})
			continue
		}
		if len(a.Statements) != 1 || !runnable[a.Statements[0].Verb] {
			res.add(s, d, false, "", nil)
			continue
		}
		if conn == nil {
			var err error
			conn, err = pgconn.Connect(context.Background(), dsn)
			if !assert.NoError(t, err, "connect as the policy role") {
				return
			}
		}
		code, msg, err := runAsRole(conn, s.sql)
		if err != nil {
			// The connection broke (a timeout cancels the query, not the
			// connection): start a new one for the next statement.
			conn.Close(context.Background())
			conn = nil
			res.add(s, d, false, "", nil)
			continue
		}
		var f *finding
		if code == corpus.InsufficientPrivilege {
			f = &finding{s, "Postgres refused it: " + msg}
		}
		res.add(s, d, true, code, f)
	}
}

// runAsRole runs sql in a transaction that is rolled back, and returns the
// SQLSTATE of its error ("" when it ran).
func runAsRole(conn *pgconn.PgConn, sql string) (code, msg string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = conn.Exec(ctx, "BEGIN; SET LOCAL statement_timeout = '2s'; SET LOCAL lock_timeout = '1s'; "+sql).ReadAll()
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		code, msg, err = pe.Code, pe.Message, nil
	}
	if err != nil {
		return "", "", err
	}
	if _, err := conn.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
		return "", "", err
	}
	return code, msg, nil
}

func report(t *testing.T, su corpus.Suite, res *results) {
	var sources []string
	for s := range res.bySource {
		sources = append(sources, s)
	}
	sort.Strings(sources)
	var all tally
	for _, s := range sources {
		ta := res.bySource[s]
		all.total += ta.total
		all.allowed += ta.allowed
		all.ran += ta.ran
		all.pgOK += ta.pgOK
		t.Logf("suite %s, %s: %d statements, %d allowed by keyhole (denied: %s), %d run as the policy role: %d ran, errors %s",
			su.Name, s, ta.total, ta.allowed, topCodes(ta.denials), ta.ran, ta.pgOK, topCodes(ta.pgErrors))
		for code, ex := range ta.examples {
			t.Logf("  allowed, Postgres error %s: %s", code, ex)
		}
	}
	t.Logf("suite %s: %d statements, %d allowed, %d run, %d ran without error, %d finding(s)",
		su.Name, all.total, all.allowed, all.ran, all.pgOK, len(res.findings))
	// The check is only as good as the number of allowed statements that
	// Postgres actually ran.
	assert.Positive(t, all.pgOK, "no allowed statement ran in Postgres: the differential checked nothing")
	for i, f := range res.findings {
		if i == 30 {
			t.Errorf("... and %d more", len(res.findings)-i)
			break
		}
		t.Errorf("keyhole allowed a statement (%s) that %s\n  %s", f.source, f.why, f.sql)
	}
}

func topCodes(m map[string]int) string {
	type kv struct {
		code string
		n    int
	}
	var kvs []kv
	for c, n := range m {
		kvs = append(kvs, kv{c, n})
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].n > kvs[j].n || kvs[i].n == kvs[j].n && kvs[i].code < kvs[j].code })
	var parts []string
	for i, x := range kvs {
		if i == 6 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s×%d", x.code, x.n))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// shopTables are the public tables and views of the fixture.
func shopTables(cat *catalog.Catalog) []differential.Table {
	var out []differential.Table
	for name, rel := range cat.Relations["public"] {
		if rel.Kind == catalog.KindSequence {
			continue
		}
		t := differential.Table{Name: name}
		for _, c := range rel.Columns {
			t.Cols = append(t.Cols, c.Name)
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// corpusSelects are the single-text SELECT cases of the suite's corpus.
func corpusSelects(t *testing.T, su corpus.Suite) []string {
	cases, err := corpus.LoadCases(fixture.Path(t, su.CasesDir))
	require.NoError(t, err)
	var out []string
	for _, c := range cases {
		if len(c.SQL) != 1 {
			continue
		}
		q := strings.TrimSuffix(strings.TrimSpace(c.SQL[0]), ";")
		if strings.HasPrefix(strings.ToUpper(q), "SELECT") && !strings.Contains(q, ";") {
			out = append(out, q)
		}
	}
	return out
}

// sqlsmith generates n statements against the database (sqlsmith
// --dry-run prints them instead of running them).
func sqlsmith(t *testing.T, dsn string, n int, seed uint64) []string {
	t.Helper()
	bin, err := exec.LookPath("sqlsmith")
	require.NoError(t, err, "sqlsmith is not installed: run scripts/setup.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--target="+dsn, "--dry-run", "--exclude-catalog",
		"--max-queries="+strconv.Itoa(n), "--seed="+strconv.FormatUint(seed%(1<<31), 10))
	out, err := cmd.Output()
	require.NoError(t, err, "sqlsmith")
	stmts := differential.SplitStatements(string(out))
	require.NotEmpty(t, stmts, "sqlsmith printed no statement")
	return stmts
}
