package corpus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Suite is one policy with the cases decided against it.
type Suite struct {
	Name   string
	Policy string // policy file, relative to the module root
	Agent  string // the agent the cases are decided for
	// CasesDir holds the case files, relative to the module root.
	CasesDir string
	// Grants returns the statements that give Postgres role r (already
	// quoted) exactly what the policy grants the agent's role.
	Grants func(cat *catalog.Catalog, r string) []string
	// MinDeny and MinAllow are the corpus sizes the suite must keep.
	MinDeny, MinAllow int
}

// Suites are the corpus's policies.
var Suites = []Suite{
	{
		// The design's example policy: the main corpus.
		Name:     "analyst",
		Policy:   "testdata/policy/shop.yaml",
		Agent:    "sales-summarizer",
		CasesDir: "testdata/pg/cases",
		Grants: func(cat *catalog.Catalog, r string) []string {
			return []string{
				"GRANT USAGE ON SCHEMA public TO " + r,
				"GRANT SELECT ON public.orders TO " + r,
				"GRANT SELECT (" + strings.Join(UnlabelledCustomerColumns(cat), ", ") + ") ON public.customers TO " + r,
				// No grant on order_id_seq: the policy grants none, so an
				// insert that runs orders.id's nextval default is refused
				// (redteam FINDING 8).
				"GRANT INSERT ON public.orders TO " + r,
			}
		},
		MinDeny:  200,
		MinAllow: 100,
	},
	{
		// The extended format: column lists, update/delete, functions, settings.
		Name:     "writer",
		Policy:   "testdata/policy/shop-writer.yaml",
		Agent:    "order-clerk",
		CasesDir: "testdata/pg/cases-writer",
		Grants: func(_ *catalog.Catalog, r string) []string {
			return []string{
				"GRANT USAGE ON SCHEMA public TO " + r,
				"GRANT SELECT ON public.orders, public.products, public.customer_emails, public.order_summary TO " + r,
				"GRANT SELECT (id, name) ON public.customers TO " + r,
				"GRANT INSERT, DELETE ON public.orders TO " + r,
				"GRANT UPDATE (status, total) ON public.orders TO " + r,
				// merge: {public.products: [title]} (creds: no DELETE).
				"GRANT INSERT (title), UPDATE (title) ON public.products TO " + r,
				"GRANT SELECT, INSERT, UPDATE, DELETE ON public.tickets, public.shipments, public.returns TO " + r,
				"GRANT SELECT ON public.visits, public.visits_2024, public.notes, public.notes_private, " +
					"public.events_log, public.events_log_archive, public.contacts TO " + r,
				"GRANT UPDATE ON public.visits_2024, public.notes TO " + r,
			}
		},
	},
}

// Case is one corpus entry.
type Case struct {
	ID string `yaml:"id"`
	// SQL is one text, or several texts run in order in one session; each
	// allowed text is applied to the session, and Expect is the decision of
	// the last one.
	SQL    Texts  `yaml:"sql"`
	Expect string `yaml:"expect"` // "allow" or "deny"
	Why    string `yaml:"why"`
	// Problem, when set, is a reason code or problem code that one of the
	// decision's reasons must carry.
	Problem string `yaml:"problem"`
	// PG is "denied" when Postgres itself must refuse the case with 42501
	// under the policy-equivalent grants, "skip" when the case must not run
	// inside the rolled-back test transaction (transaction control), and
	// empty otherwise.
	PG string `yaml:"pg"`

	File string `yaml:"-"`
}

// Texts is a case's SQL: a YAML string or a list of strings.
type Texts []string

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (t *Texts) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*t = Texts{s}
		return nil
	case yaml.SequenceNode:
		var ss []string
		if err := n.Decode(&ss); err != nil {
			return err
		}
		*t = ss
		return nil
	}
	return fmt.Errorf("line %d: sql must be a string or a list of strings", n.Line)
}

func (c *Case) String() string {
	return fmt.Sprintf("%s (%s): %s", c.ID, c.File, c.Why)
}

// SQLText renders the case's texts for failure messages.
func (c *Case) SQLText() string { return strings.Join(c.SQL, "\n  -- then --\n  ") }

// LoadCases reads every case file of a directory, strictly (unknown keys
// are errors), in file name order.
func LoadCases(casesDir string) ([]*Case, error) {
	files, err := filepath.Glob(filepath.Join(casesDir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no case files in %s", casesDir)
	}
	sort.Strings(files)
	var all []*Case
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		var cs []*Case
		if err := dec.Decode(&cs); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, c := range cs {
			c.File = filepath.Base(f)
		}
		all = append(all, cs...)
	}
	return all, nil
}

// ValidateCase reports what is wrong with one case's fields.
func ValidateCase(c *Case) error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("missing id"))
	}
	if len(c.SQL) == 0 {
		errs = append(errs, errors.New("missing sql"))
	}
	for i, s := range c.SQL {
		if strings.TrimSpace(s) == "" {
			errs = append(errs, fmt.Errorf("sql[%d] is empty", i))
		}
	}
	if c.Expect != "allow" && c.Expect != "deny" {
		errs = append(errs, fmt.Errorf("expect %q is not allow or deny", c.Expect))
	}
	if strings.TrimSpace(c.Why) == "" {
		errs = append(errs, errors.New("missing why"))
	}
	switch c.PG {
	case "", "skip":
	case "denied":
		// Postgres refusing under the policy's own grants while keyhole
		// allows would break keyhole's core promise.
		if c.Expect != "deny" {
			errs = append(errs, errors.New("pg: denied on a case that expects allow"))
		}
	default:
		errs = append(errs, fmt.Errorf("pg %q is not denied or skip", c.PG))
	}
	if c.Problem != "" && c.Expect != "deny" {
		errs = append(errs, errors.New("problem set on a case that expects allow"))
	}
	return errors.Join(errs...)
}

// Forbidden reports whether a column read would leak labelled data: the
// labelled customers columns and anything in the secret table.
func Forbidden(rel sqlpolicy.Rel, column string) bool {
	switch {
	case rel.Schema == "public" && rel.Name == "secrets":
		return true
	case rel.Schema == "public" && rel.Name == "customers":
		return column == "email" || column == "ssn" || column == "phone"
	}
	return false
}

// ForbiddenReads lists the labelled columns an Access reads, looking inside
// PREPAREd and EXPLAINed statements too.
func ForbiddenReads(a *sqlpolicy.Access) []string {
	var out []string
	var walk func(st *sqlpolicy.Statement)
	walk = func(st *sqlpolicy.Statement) {
		if st == nil {
			return
		}
		for _, col := range st.Columns {
			if col.Mode == sqlpolicy.Read && Forbidden(col.Rel, col.Column) {
				out = append(out, col.Rel.String()+"."+col.Column)
			}
		}
		for _, tb := range st.Tables {
			if tb.Mode == sqlpolicy.Read && Forbidden(tb.Rel, "") {
				out = append(out, tb.Rel.String())
			}
		}
		walk(st.Prepared)
		walk(st.Explained)
	}
	if a != nil {
		for i := range a.Statements {
			walk(&a.Statements[i])
		}
	}
	return out
}

// Shop is the fixture database with a role holding exactly the policy's
// grants.
type Shop struct {
	DB *testpg.DB
	// RoleDSN connects as the policy-equivalent role.
	RoleDSN string
	Cat     *catalog.Catalog
}

// UnlabelledCustomerColumns are the customers columns the analyst may
// read: every column of the table except the labelled ones.
func UnlabelledCustomerColumns(cat *catalog.Catalog) []string {
	rel := cat.Relation("public", "customers")
	if rel == nil {
		return nil
	}
	var cols []string
	for _, c := range rel.Columns {
		if !Forbidden(sqlpolicy.Rel{Schema: "public", Name: "customers"}, c.Name) {
			cols = append(cols, pgx.Identifier{c.Name}.Sanitize())
		}
	}
	return cols
}

// NewShop loads shop.sql into a throwaway database, reads its catalog as
// the superuser, and creates a login role holding exactly su's grants.
func NewShop(t testing.TB, su Suite) *Shop {
	t.Helper()
	// The role first: cleanups run last-in first-out, so the database (in
	// which the role holds privileges) is dropped before the role.
	role := testpg.NewRole(t, "")
	db := testpg.New(t, fixture.ShopSQL(t)+EffectsSQL(t))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.DSN)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	cat, err := catalog.LoadPostgres(ctx, conn)
	require.NoError(t, err)
	require.NotNil(t, cat.Relation("public", "customers"), "public.customers missing from the catalog")

	for _, stmt := range su.Grants(cat, pgx.Identifier{role}.Sanitize()) {
		_, err := conn.Exec(ctx, stmt)
		require.NoError(t, err, stmt)
	}
	return &Shop{DB: db, RoleDSN: testpg.WithUser(db.DSN, role, ""), Cat: cat}
}

// EffectsSQL returns testdata/pg/effects.sql: the objects that run code
// beyond a statement's text (a function shadowing a built-in's name,
// triggers, a rule, a check constraint calling a function, foreign key
// actions), loaded after shop.sql.
func EffectsSQL(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(fixture.Path(t, "testdata", "pg", "effects.sql"))
	require.NoError(t, err)
	return string(b)
}

// PGOutcome runs texts as the policy-equivalent role inside a transaction
// that is rolled back, on a connection of its own, and returns the SQLSTATE
// of the first error ("" when every text ran).
func PGOutcome(dsn string, texts []string) (code, msg string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", "", fmt.Errorf("connect as role: %w", err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		return "", "", err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = '5s'; SET LOCAL lock_timeout = '2s'"); err != nil {
		return "", "", err
	}
	for _, text := range texts {
		var err error
		if copyFromStdin.MatchString(text) {
			// A plain Exec would leave the server waiting for COPY data;
			// send none.
			_, err = conn.PgConn().CopyFrom(ctx, strings.NewReader(""), text)
		} else {
			_, err = tx.Exec(ctx, text)
		}
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				return pe.Code, pe.Message, nil
			}
			return "", "", err
		}
	}
	return "", "", nil
}

// copyFromStdin matches a text that is a single COPY ... FROM STDIN.
var copyFromStdin = regexp.MustCompile(`(?is)^\s*copy\b[^;]*\bfrom\s+stdin\b[^;]*;?\s*$`)

// InsufficientPrivilege is SQLSTATE 42501, Postgres refusing for lack of
// a privilege.
const InsufficientPrivilege = "42501"
