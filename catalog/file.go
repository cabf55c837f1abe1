package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"

	"github.com/keyholedb/keyhole/internal/atomicfile"
)

// Save writes c as indented JSON. Maps are written with sorted keys, so the
// same catalog always gives the same bytes (dumps diff cleanly).
func (c *Catalog) Save(w io.Writer) error {
	if err := c.Validate(); err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	saved := *c
	saved.Format = FormatVersion
	if err := enc.Encode(&saved); err != nil {
		return fmt.Errorf("catalog: encode: %w", err)
	}
	return nil
}

// WriteFile saves c to path, replacing it atomically (a reader never sees a
// half-written dump; see internal/atomicfile for links and devices).
func (c *Catalog) WriteFile(path string) error {
	var buf bytes.Buffer
	if err := c.Save(&buf); err != nil {
		return err
	}
	if err := atomicfile.Write(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("catalog: write %s: %w", path, err)
	}
	return nil
}

// Load reads a catalog written by Save. It is strict: unknown fields,
// trailing data and an invalid catalog (see Validate) are errors.
func Load(r io.Reader) (*Catalog, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("catalog: read: %w", err)
	}
	// encoding/json matches keys case-insensitively and lets a duplicate key
	// win silently; checkExactKeys rejects both before decoding.
	if err := checkExactKeys(data, reflect.TypeFor[Catalog]()); err != nil {
		return nil, fmt.Errorf("catalog: decode: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Catalog
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("catalog: decode: %w", err)
	}
	if c.Format != FormatVersion {
		return nil, fmt.Errorf("catalog: %w: format %d, this keyhole reads format %d: the file lacks what decisions now depend on (constraints, keys, indexes, partitioning, row security); dump the catalog again with this keyhole (keyhole catalog dump)", ErrFormat, c.Format, FormatVersion)
	}
	if c.Relations == nil {
		c.Relations = map[string]map[string]*Relation{}
	}
	if c.Functions == nil {
		c.Functions = map[string]map[string]*Function{}
	}
	// "labels": [] and an absent "labels" mean the same; keep one form so a
	// loaded catalog equals its own reload.
	for _, rels := range c.Relations {
		for _, r := range rels {
			if r == nil {
				continue
			}
			if len(r.Labels) == 0 {
				r.Labels = nil
			}
			for _, col := range r.Columns {
				if col != nil && len(col.Labels) == 0 {
					col.Labels = nil
				}
			}
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.linkParents()
	return &c, nil
}

// ReadFile loads the catalog saved at path.
func ReadFile(path string) (*Catalog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	defer f.Close()
	c, err := Load(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ErrFormat is wrapped by Load's error for a file saved in another format
// (FormatVersion).
var ErrFormat = errors.New("catalog file of another format")

// ErrInvalid is wrapped by the errors Validate returns.
var ErrInvalid = errors.New("invalid catalog")

var relKinds = []RelKind{KindTable, KindView, KindMatView, KindForeignTable, KindPartitioned, KindSequence}

var funcKinds = []string{"function", "aggregate", "window", "procedure"}

// Validate checks what keyhole relies on when it decides with c: a known
// dialect, map keys that agree with the objects' own names, known kinds and
// volatilities, no nil or duplicate entries, and valid labels. A catalog that
// fails it must not be used (names would resolve to the wrong objects or
// labels would be missed).
func (c *Catalog) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("catalog: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if c == nil {
		return bad("nil catalog")
	}
	if c.Dialect != "postgres" && c.Dialect != "mysql" {
		return bad("dialect %q (want postgres or mysql)", c.Dialect)
	}
	for schema, rels := range c.Relations {
		for name, r := range rels {
			if r == nil {
				return bad("relation %s.%s is null", schema, name)
			}
			if r.Schema != schema || r.Name != name {
				return bad("relation listed as %s.%s is named %s", schema, name, r)
			}
			if !slices.Contains(relKinds, r.Kind) {
				return bad("relation %s: kind %q", r, r.Kind)
			}
			if err := checkLabels(r.Labels); err != nil {
				return bad("relation %s: %v", r, err)
			}
			seen := map[string]bool{}
			for i, col := range r.Columns {
				if col == nil || col.Name == "" {
					return bad("relation %s: column %d has no name", r, i+1)
				}
				if seen[col.Name] {
					return bad("relation %s: duplicate column %q", r, col.Name)
				}
				seen[col.Name] = true
				if err := checkLabels(col.Labels); err != nil {
					return bad("column %s.%s: %v", r, col.Name, err)
				}
			}
		}
	}
	for schema, fns := range c.Functions {
		for name, f := range fns {
			if f == nil {
				return bad("function %s.%s is null", schema, name)
			}
			if f.Schema != schema || f.Name != name {
				return bad("function listed as %s.%s is named %s.%s", schema, name, f.Schema, f.Name)
			}
			if !slices.Contains(funcKinds, f.Kind) {
				return bad("function %s.%s: kind %q", schema, name, f.Kind)
			}
			switch f.Volatility {
			case Immutable, Stable, Volatile:
			default:
				return bad("function %s.%s: volatility %q", schema, name, f.Volatility)
			}
		}
	}
	return nil
}

func checkLabels(labels []string) error {
	for _, l := range labels {
		if !ValidLabel(l) {
			return fmt.Errorf("label %q: %w", l, ErrBadLabel)
		}
	}
	return nil
}
