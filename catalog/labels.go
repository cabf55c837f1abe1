package catalog

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// InvalidLabel is attached, together with any valid labels, to a relation or
// column whose comment has a keyhole marker with an unparseable label. The
// DBA meant to label the object, so dropping the bad token silently would
// leave it less protected than intended; policies can deny this label (or
// "keyhole.*") to fail closed until the comment is fixed.
const InvalidLabel = "keyhole.invalid_label"

// CommentMarker introduces labels in a relation or column comment:
//
//	COMMENT ON COLUMN customers.email IS 'Contact address. keyhole: pii.email, pii.contact';
//
// The labels run from the marker to the end of the line or a ';', separated
// by commas and/or white space. The marker is matched case-insensitively and
// must not be the tail of a longer word; a comment may hold several.
const CommentMarker = "keyhole:"

// ErrBadLabel is wrapped by the errors ParseCommentLabels returns.
var ErrBadLabel = errors.New("invalid label")

// ValidLabel reports whether s is a label: one or more lower-case segments of
// [a-z0-9_-] joined by '.', e.g. "pii.email", "secret", "pii.contact-2".
func ValidLabel(s string) bool {
	if s == "" {
		return false
	}
	for seg := range strings.SplitSeq(s, ".") {
		if !validSegment(seg) {
			return false
		}
	}
	return true
}

func validSegment(seg string) bool {
	if seg == "" {
		return false
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// ValidLabelPattern reports whether s is a label pattern: a label (matches
// itself), a label prefix followed by ".*" (matches every label below it),
// or "*" (matches every label).
func ValidLabelPattern(s string) bool {
	if s == "*" {
		return true
	}
	if prefix, ok := strings.CutSuffix(s, ".*"); ok {
		return ValidLabel(prefix)
	}
	return ValidLabel(s)
}

// MatchLabel reports whether label matches pattern. "pii.*" matches
// "pii.email" and "pii.x.y" but not "pii" itself; "*" matches any label.
// An invalid pattern or label matches nothing.
func MatchLabel(pattern, label string) bool {
	if !ValidLabelPattern(pattern) || !ValidLabel(label) {
		return false
	}
	if pattern == "*" {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, ".*"); ok {
		return strings.HasPrefix(label, prefix+".")
	}
	return pattern == label
}

// ParseCommentLabels returns the labels in a comment (see CommentMarker),
// sorted and without duplicates; nil when the comment has no marker. When a
// token after a marker is not a valid label, or a marker has no labels, it
// returns the valid labels it found together with an error wrapping
// ErrBadLabel that names every bad token.
func ParseCommentLabels(comment string) ([]string, error) {
	var labels, bad []string
	emptyMarker := false
	for i := 0; ; {
		j := indexMarker(comment[i:])
		if j < 0 {
			break
		}
		start := i + j
		i = start + len(CommentMarker)
		if start > 0 && isWordByte(comment[start-1]) {
			continue // e.g. "mykeyhole:" is not a marker
		}
		rest := comment[i:]
		if end := strings.IndexAny(rest, ";\r\n"); end >= 0 {
			rest = rest[:end]
		}
		tokens := strings.FieldsFunc(rest, func(r rune) bool {
			return r == ',' || r == ' ' || r == '\t' || r == '\v' || r == '\f'
		})
		if len(tokens) == 0 {
			emptyMarker = true
		}
		for _, tok := range tokens {
			if ValidLabel(tok) {
				labels = append(labels, tok)
			} else {
				bad = append(bad, tok)
			}
		}
	}
	labels = sortedSet(labels)
	switch {
	case len(bad) > 0:
		quoted := make([]string, len(bad))
		for k, b := range bad {
			quoted[k] = fmt.Sprintf("%q", b)
		}
		return labels, fmt.Errorf("%w %s (labels are lower-case [a-z0-9_-] segments joined by '.')",
			ErrBadLabel, strings.Join(quoted, ", "))
	case emptyMarker:
		return labels, fmt.Errorf("%w: %q with no labels after it", ErrBadLabel, CommentMarker)
	}
	return labels, nil
}

// indexMarker is the byte offset of the first CommentMarker in s, matched
// ASCII-case-insensitively, or -1. (strings.ToLower would shift offsets in
// text that is not valid UTF-8.)
func indexMarker(s string) int {
	for i := 0; i+len(CommentMarker) <= len(s); i++ {
		if asciiEqualFold(s[i:i+len(CommentMarker)], CommentMarker) {
			return i
		}
	}
	return -1
}

func asciiEqualFold(a, lowerB string) bool {
	for k := 0; k < len(a); k++ {
		c := a[k]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lowerB[k] {
			return false
		}
	}
	return true
}

func isWordByte(c byte) bool {
	return c == '_' || c == '-' || c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// ColumnLabels returns the effective labels of column col of rel: the
// relation's labels together with the column's, sorted and without
// duplicates. A column rel does not have gets the relation's labels only.
func (c *Catalog) ColumnLabels(rel *Relation, col string) []string {
	if rel == nil {
		return nil
	}
	out := slices.Clone(rel.Labels)
	if column := rel.Column(col); column != nil {
		out = append(out, column.Labels...)
	}
	return sortedSet(out)
}

// sortedSet sorts and dedups labels in place; nil for none.
func sortedSet(labels []string) []string {
	if len(labels) == 0 {
		return nil
	}
	slices.Sort(labels)
	return slices.Compact(labels)
}
