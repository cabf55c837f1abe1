package filestamp_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/filestamp"
)

func TestStampTellsVersionsApart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "revoked.txt")
	require.NoError(t, os.WriteFile(path, []byte("jti-1\n"), 0o600))
	first, err := filestamp.Stat(path)
	require.NoError(t, err)
	again, err := filestamp.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, first, again, "an unchanged file keeps its stamp")
	fi, err := os.Stat(path)
	require.NoError(t, err)

	// Same size, the old modification time put back (cp -p, rsync -t).
	require.NoError(t, os.WriteFile(path, []byte("jti-2\n"), 0o600))
	require.NoError(t, os.Chtimes(path, fi.ModTime(), fi.ModTime()))
	rewritten, err := filestamp.Stat(path)
	require.NoError(t, err)
	assert.NotEqual(t, first, rewritten, "a same-size rewrite with the old mtime is a new version")

	// Renamed into place, with the old times.
	next := filepath.Join(dir, "next.txt")
	require.NoError(t, os.WriteFile(next, []byte("jti-3\n"), 0o600))
	require.NoError(t, os.Chtimes(next, fi.ModTime(), fi.ModTime()))
	require.NoError(t, os.Rename(next, path))
	renamed, err := filestamp.Stat(path)
	require.NoError(t, err)
	assert.NotEqual(t, rewritten, renamed, "a file renamed into place is a new version")

	_, err = filestamp.Stat(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}
