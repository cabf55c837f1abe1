package mycorpus_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// repoRoot is the module root relative to this package's directory.
const repoRoot = "../.."

var (
	casesDir   = filepath.Join(repoRoot, "testdata", "mysql", "cases")
	policyFile = filepath.Join(repoRoot, "testdata", "mysql", "policy.yaml")
	shopFile   = filepath.Join(repoRoot, "testdata", "mysql", "shop.sql")
)

// agent is the agent the cases are decided for.
const agent = "sales-summarizer"

// Case is one corpus entry.
type Case struct {
	ID string `yaml:"id"`
	// SQL is one text, or several texts run in order in one session; each
	// allowed text is applied to the session, and Expect is the decision
	// of the last one.
	SQL    Texts  `yaml:"sql"`
	Expect string `yaml:"expect"` // "allow" or "deny"
	Why    string `yaml:"why"`
	// Problem, when set, is a reason code or problem code that one of the
	// decision's reasons must carry.
	Problem string `yaml:"problem"`
	// Only, on a deny case, says why MariaDB's own grants do not refuse
	// it (something only keyhole catches). Without it, MariaDB must
	// refuse the case with a privilege error.
	Only string `yaml:"only"`
	// Maria is "skip" for a case that must not run inside the test's
	// rolled-back transaction (transaction control, USE of another
	// database whose effect outlives it ...).
	Maria string `yaml:"maria"`

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

func (c *Case) String() string { return fmt.Sprintf("%s (%s): %s", c.ID, c.File, c.Why) }

// SQLText renders the case's texts for failure messages.
func (c *Case) SQLText() string { return strings.Join(c.SQL, "\n  -- then --\n  ") }

// loadCases reads every case file, strictly, in file name order.
func loadCases() ([]*Case, error) {
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
	if c.Only != "" && c.Expect != "deny" {
		errs = append(errs, errors.New("only set on a case that expects allow"))
	}
	if c.Maria != "" && c.Maria != "skip" {
		errs = append(errs, fmt.Errorf("maria %q is not skip", c.Maria))
	}
	if c.Maria == "skip" && c.Expect == "deny" && c.Only == "" {
		errs = append(errs, errors.New("a deny case not run in MariaDB must say in only why MariaDB's grants do not catch it"))
	}
	if c.Problem != "" && c.Expect != "deny" {
		errs = append(errs, errors.New("problem set on a case that expects allow"))
	}
	return errors.Join(errs...)
}
