package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

func init() {
	register("labels", "list columns with their labels (or the unlabeled ones)", runLabels)
}

const labelsUsage = `usage: keyhole labels (--dsn URL | --catalog FILE) [--policy FILE] [--unlabeled] [--json]

Lists every column of every non-system table, view, materialized view and
foreign table with its labels and where each came from: a comment in the
database ("keyhole: pii.email" on the column or its table) or the labels
section of the policy file. --unlabeled lists only the columns with no label,
i.e. what is left to label. Labels on a view's own columns are listed; labels
a view inherits from the columns it reads are applied when a statement is
decided, not here. Sequences are left out.

  --dsn URL        read the schema from the upstream: postgres://... or key=value
                   (PGPASSWORD works), or mysql://USER@HOST[:PORT]/DB (MYSQL_PWD)
  --catalog FILE   read it from a "keyhole catalog dump" file instead
  --policy FILE    also apply the policy file's labels (validated against the schema)
  --unlabeled      only columns without labels
  --json           one JSON document instead of a table
  --timeout D      give up reading the schema after D (default 1m)
`

// labelSource says where a label on a column came from.
type labelSource struct {
	Label string `json:"label"`
	// Source is "comment" (a database comment) or "policy" (the policy file).
	Source string `json:"source"`
	// On is "column" when the label is on the column itself, "table" when
	// it is on the whole relation.
	On string `json:"on"`
}

type labelledColumn struct {
	Schema string          `json:"schema"`
	Table  string          `json:"table"`
	Kind   catalog.RelKind `json:"kind"`
	Column string          `json:"column"`
	Type   string          `json:"type"`
	// Labels is the effective set, sorted.
	Labels  []string      `json:"labels"`
	Sources []labelSource `json:"sources"`
}

type labelsReport struct {
	Columns  []labelledColumn `json:"columns"`
	Warnings []string         `json:"warnings"`
}

func runLabels(args []string) int {
	fs := flag.NewFlagSet("keyhole labels", flag.ContinueOnError)
	dsn := fs.String("dsn", "", "")
	catFile := fs.String("catalog", "", "")
	policyFile := fs.String("policy", "", "")
	unlabeled := fs.Bool("unlabeled", false, "")
	asJSON := fs.Bool("json", false, "")
	timeout := fs.Duration("timeout", time.Minute, "")
	if code, ok := cliFlags(fs, args, labelsUsage, os.Stdout, os.Stderr); !ok {
		return code
	}
	if (*dsn == "") == (*catFile == "") {
		fmt.Fprintf(os.Stderr, "keyhole labels: give exactly one of --dsn and --catalog\n%s", labelsUsage)
		return exitError
	}

	var (
		cat      *catalog.Catalog
		warnings []string
	)
	if *dsn != "" {
		ctx, stop := catalogContext(*timeout)
		l, err := inspectDSN(ctx, *dsn)
		stop()
		if err != nil {
			fmt.Fprintf(os.Stderr, "keyhole labels: %v\n", err)
			return exitError
		}
		cat, warnings = l.Catalog, l.Warnings
	} else {
		c, err := catalog.ReadFile(*catFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "keyhole labels: %v\n", err)
			return exitError
		}
		cat = c
	}

	var pol *sqlpolicy.Policy
	if *policyFile != "" {
		p, pws, err := sqlpolicy.LoadPolicyFile(*policyFile, cat)
		if err != nil {
			fmt.Fprintf(os.Stderr, "keyhole labels: %v\n", err)
			return exitError
		}
		pol = p
		for _, w := range pws {
			warnings = append(warnings, w.String())
		}
	}

	rep := labelsReport{Columns: labelColumns(cat, pol, *unlabeled), Warnings: warnings}
	if rep.Warnings == nil {
		rep.Warnings = []string{}
	}
	var err error
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		catalogPrintWarnings(warnings)
		err = writeLabelsTable(os.Stdout, rep.Columns, *unlabeled)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "keyhole labels: write: %v\n", err)
		return exitError
	}
	return exitOK
}

// labelColumns lists the columns of the catalog's non-system relations,
// sorted by schema, relation and then column order, with their labels from
// comments and from the policy.
func labelColumns(cat *catalog.Catalog, pol *sqlpolicy.Policy, onlyUnlabeled bool) []labelledColumn {
	var rels []*catalog.Relation
	for _, byName := range cat.Relations {
		for _, r := range byName {
			if !r.System && r.Kind != catalog.KindSequence {
				rels = append(rels, r)
			}
		}
	}
	slices.SortFunc(rels, func(a, b *catalog.Relation) int {
		if c := strings.Compare(a.Schema, b.Schema); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})

	out := []labelledColumn{}
	for _, r := range rels {
		var ruleTable []string
		ruleColumns := map[string][]string{}
		if pol != nil {
			for _, lr := range pol.Labels {
				if lr.Rel.Schema != r.Schema || lr.Rel.Name != r.Name {
					continue
				}
				if lr.Column == "" {
					ruleTable = append(ruleTable, lr.Labels...)
				} else {
					ruleColumns[lr.Column] = append(ruleColumns[lr.Column], lr.Labels...)
				}
			}
		}
		for _, col := range r.Columns {
			lc := labelledColumn{
				Schema: r.Schema, Table: r.Name, Kind: r.Kind,
				Column: col.Name, Type: col.Type,
				Labels: []string{}, Sources: []labelSource{},
			}
			add := func(labels []string, source, on string) {
				for _, l := range labels {
					s := labelSource{Label: l, Source: source, On: on}
					if !slices.Contains(lc.Sources, s) {
						lc.Sources = append(lc.Sources, s)
					}
					if !slices.Contains(lc.Labels, l) {
						lc.Labels = append(lc.Labels, l)
					}
				}
			}
			add(col.Labels, "comment", "column")
			add(r.Labels, "comment", "table")
			add(ruleColumns[col.Name], "policy", "column")
			add(ruleTable, "policy", "table")
			slices.Sort(lc.Labels)
			if onlyUnlabeled && len(lc.Labels) > 0 {
				continue
			}
			out = append(out, lc)
		}
	}
	return out
}

func writeLabelsTable(w io.Writer, cols []labelledColumn, onlyUnlabeled bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COLUMN\tKIND\tTYPE\tLABELS")
	for _, c := range cols {
		labels := "-"
		if len(c.Labels) > 0 {
			parts := make([]string, len(c.Labels))
			for i, l := range c.Labels {
				var from []string
				for _, s := range c.Sources {
					if s.Label == l {
						from = append(from, s.Source+" on "+s.On)
					}
				}
				parts[i] = fmt.Sprintf("%s (%s)", l, strings.Join(from, ", "))
			}
			labels = strings.Join(parts, ", ")
		}
		fmt.Fprintf(tw, "%s.%s.%s\t%s\t%s\t%s\n", c.Schema, c.Table, c.Column, c.Kind, c.Type, labels)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	what := "columns"
	if onlyUnlabeled {
		what = "unlabeled columns"
	}
	_, err := fmt.Fprintf(w, "%d %s\n", len(cols), what)
	return err
}
