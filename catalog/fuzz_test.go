package catalog_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
)

func FuzzParseCommentLabels(f *testing.F) {
	for _, s := range []string{
		"", "keyhole: pii.email", "x keyhole: a,b c; d", "keyhole:\nkeyhole: X", "KEYHOLE: a.b.c-d_e",
		"mykeyhole: a", "keyhole: ;", "keyhole: pii.*",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, comment string) {
		labels, err := catalog.ParseCommentLabels(comment)
		for _, l := range labels {
			assert.True(t, catalog.ValidLabel(l), "returned invalid label %q", l)
		}
		assert.True(t, slices.IsSorted(labels))
		assert.Equal(t, len(labels), len(slices.Compact(slices.Clone(labels))), "duplicates")
		if !strings.Contains(strings.ToLower(comment), catalog.CommentMarker) {
			assert.Nil(t, labels)
			assert.NoError(t, err)
		}
		if err != nil {
			assert.ErrorIs(t, err, catalog.ErrBadLabel)
		}
	})
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(`{"format":4,"dialect":"mysql","relations":{},"functions":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := catalog.Load(bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever loads is valid, saves, and reloads to the same catalog.
		require.NoError(t, c.Validate())
		var buf bytes.Buffer
		require.NoError(t, c.Save(&buf))
		again, err := catalog.Load(&buf)
		require.NoError(t, err)
		assert.Equal(t, c, again)
	})
}
