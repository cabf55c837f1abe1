package corpus_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/keyholedb/keyhole/catalog"
)

// repoRoot is the module root relative to this package's directory, where
// `go test` runs.
const repoRoot = "../.."

// suite is one policy with the cases decided against it.
type suite struct {
	name     string
	policy   string // policy file
	agent    string // the agent the cases are decided for
	casesDir string
	// grants returns the statements that give Postgres role r (already
	// quoted) exactly what the policy grants the agent's role.
	grants func(cat *catalog.Catalog, r string) []string
	// minDeny and minAllow are the corpus sizes the suite must keep.
	minDeny, minAllow int
}

var suites = []suite{
	{
		// The design's example policy: the main corpus.
		name:     "analyst",
		policy:   filepath.Join(repoRoot, "testdata", "policy", "shop.yaml"),
		agent:    "sales-summarizer",
		casesDir: filepath.Join(repoRoot, "testdata", "pg", "cases"),
		grants: func(cat *catalog.Catalog, r string) []string {
			return []string{
				"GRANT USAGE ON SCHEMA public TO " + r,
				"GRANT SELECT ON public.orders TO " + r,
				"GRANT SELECT (" + strings.Join(unlabelledCustomerColumns(cat), ", ") + ") ON public.customers TO " + r,
				// No grant on order_id_seq: the policy grants none, so an
				// insert that runs orders.id's nextval default is refused
				// (redteam FINDING 8).
				"GRANT INSERT ON public.orders TO " + r,
			}
		},
		minDeny:  200,
		minAllow: 100,
	},
	{
		// The extended format: column lists, update/delete, functions, settings.
		name:     "writer",
		policy:   filepath.Join(repoRoot, "testdata", "policy", "shop-writer.yaml"),
		agent:    "order-clerk",
		casesDir: filepath.Join(repoRoot, "testdata", "pg", "cases-writer"),
		grants: func(_ *catalog.Catalog, r string) []string {
			return []string{
				"GRANT USAGE ON SCHEMA public TO " + r,
				"GRANT SELECT ON public.orders, public.products, public.customer_emails, public.order_summary TO " + r,
				"GRANT SELECT (id, name) ON public.customers TO " + r,
				"GRANT INSERT, DELETE ON public.orders TO " + r,
				"GRANT UPDATE (status, total) ON public.orders TO " + r,
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

// loadCases reads every case file of a directory, strictly (unknown keys
// are errors), in file name order.
func loadCases(casesDir string) ([]*Case, error) {
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

// validateCase reports what is wrong with one case's fields.
func validateCase(c *Case) error {
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
