package catalog_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
)

func TestValidLabel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"pii", true},
		{"pii.email", true},
		{"pii.contact-2.home_phone", true},
		{"0.9", true},
		{"", false},
		{"PII.email", false},
		{"pii..email", false},
		{".pii", false},
		{"pii.", false},
		{"pii.*", false},
		{"*", false},
		{"pii email", false},
		{"pii,email", false},
		{"pïi", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, catalog.ValidLabel(tc.in))
		})
	}
}

func TestValidLabelPattern(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"*", true},
		{"pii", true},
		{"pii.*", true},
		{"pii.contact.*", true},
		{".*", false},
		{"pii*", false},
		{"pii.*.email", false},
		{"*.email", false},
		{"pii.**", false},
		{"Pii.*", false},
		{"", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, catalog.ValidLabelPattern(tc.in))
		})
	}
}

func TestMatchLabel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, label string
		want           bool
	}{
		{"pii.*", "pii.email", true},
		{"pii.*", "pii.x.y", true},
		{"pii.*", "pii", false},
		{"pii.*", "piix.email", false},
		{"pii.*", "secret", false},
		{"pii.email", "pii.email", true},
		{"pii.email", "pii.email.work", false},
		{"pii", "pii.email", false},
		{"*", "secret", true},
		{"*", "pii.x.y", true},
		{"*", "Not-A-Label", false},
		{"pii*", "pii.email", false},
		{"PII.*", "pii.email", false},
		{"pii.*", "pii.EMAIL", false},
	} {
		t.Run(tc.pattern+"~"+tc.label, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, catalog.MatchLabel(tc.pattern, tc.label))
		})
	}
}

func TestParseCommentLabels(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		comment string
		want    []string
		bad     []string // tokens the error must name; nil means no error
	}{
		{name: "empty", comment: "", want: nil},
		{name: "no marker", comment: "customer e-mail address", want: nil},
		{name: "one", comment: "keyhole: pii.email", want: []string{"pii.email"}},
		{name: "commas and spaces", comment: "keyhole: pii.email,pii.contact ,  secret", want: []string{"pii.contact", "pii.email", "secret"}},
		{name: "after prose, up to semicolon", comment: "Work address. keyhole: pii.email pii.contact; see RFC 5322", want: []string{"pii.contact", "pii.email"}},
		{name: "up to end of line", comment: "keyhole: pii.ssn\nNot labels: Foo Bar", want: []string{"pii.ssn"}},
		{name: "two markers", comment: "keyhole: pii.ssn\nkeyhole: secret", want: []string{"pii.ssn", "secret"}},
		{name: "dedup and sort", comment: "keyhole: secret pii.ssn secret", want: []string{"pii.ssn", "secret"}},
		{name: "marker case-insensitive", comment: "Keyhole: secret", want: []string{"secret"}},
		{name: "no space after marker", comment: "keyhole:secret", want: []string{"secret"}},
		{name: "marker inside a word", comment: "mykeyhole: secret", want: nil},
		{name: "marker after dot", comment: "x.keyhole: secret", want: nil},
		{name: "bad label kept apart", comment: "keyhole: pii.email PII.SSN", want: []string{"pii.email"}, bad: []string{`"PII.SSN"`}},
		{name: "two bad labels", comment: "keyhole: pii..x, secret, pii.*", want: []string{"secret"}, bad: []string{`"pii..x"`, `"pii.*"`}},
		{name: "trailing period", comment: "keyhole: pii.email.", want: nil, bad: []string{`"pii.email."`}},
		{name: "marker without labels", comment: "keyhole: ; pii.email", want: nil, bad: []string{"no labels"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := catalog.ParseCommentLabels(tc.comment)
			assert.Equal(t, tc.want, got)
			if tc.bad == nil {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, catalog.ErrBadLabel)
			for _, b := range tc.bad {
				assert.Contains(t, err.Error(), b)
			}
		})
	}
}

func TestColumnLabels(t *testing.T) {
	t.Parallel()
	rel := &catalog.Relation{
		Schema: "public", Name: "customers", Kind: catalog.KindTable,
		Labels: []string{"secret", "pii.contact"},
		Columns: []*catalog.Column{
			{Name: "id", Type: "integer"},
			{Name: "email", Type: "text", Labels: []string{"pii.email", "pii.contact"}},
		},
	}
	c := &catalog.Catalog{Dialect: "postgres"}
	assert.Equal(t, []string{"pii.contact", "pii.email", "secret"}, c.ColumnLabels(rel, "email"))
	assert.Equal(t, []string{"pii.contact", "secret"}, c.ColumnLabels(rel, "id"))
	assert.Equal(t, []string{"pii.contact", "secret"}, c.ColumnLabels(rel, "nope"))
	assert.Nil(t, c.ColumnLabels(nil, "email"))
	// The result is a copy: sorting it must not reorder the relation's own labels.
	assert.Equal(t, []string{"secret", "pii.contact"}, rel.Labels)

	plain := &catalog.Relation{Schema: "public", Name: "t", Columns: []*catalog.Column{{Name: "a"}}}
	assert.Nil(t, c.ColumnLabels(plain, "a"))
}
