package identity

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/keyholedb/keyhole/internal/filestamp"
)

// revokedRecheck is how often the revocation file is stat'ed for changes.
const revokedRecheck = time.Second

// revocationList is a file of revoked token ids (jti), one per line, "#"
// comments allowed, reloaded when it changes (internal/filestamp: also a
// same-size rewrite that keeps the old mtime). A revocation is never undone
// by accident: if the file becomes unreadable the last list stays in
// force, and a version that drops ids of the list in force takes effect
// only once a later check finds the file unchanged (a file read while
// being written in place, truncated or cut short, drops every id after the
// cut); until then its ids are added to those in force. New ids take
// effect at once.
type revocationList struct {
	path string
	now  func() time.Time

	mu      sync.Mutex
	ids     map[string]bool
	checked time.Time
	stamp   filestamp.Stamp // the version ids holds
	pending filestamp.Stamp // a version that drops ids, read at the last check
}

func newRevocationList(path string, now func() time.Time) (*revocationList, error) {
	r := &revocationList{path: path, now: now}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("revoked tokens file: %w", err)
	}
	if err := r.loadLocked(fi); err != nil {
		return nil, err
	}
	return r, nil
}

// loadLocked reads the file that fi describes; see revocationList for
// when a version that drops ids is held back.
func (r *revocationList) loadLocked(fi os.FileInfo) error {
	data, err := os.ReadFile(r.path)
	if err != nil {
		return fmt.Errorf("revoked tokens file: %w", err)
	}
	ids := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line != "" {
			ids[line] = true
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("revoked tokens file %s: %w", r.path, err)
	}
	stamp := filestamp.Of(fi)
	if drops(r.ids, ids) && stamp != r.pending {
		r.pending = stamp
		for id := range r.ids { // a new map: snapshot's are never written
			ids[id] = true
		}
		r.ids = ids
		return nil
	}
	r.ids, r.stamp, r.pending = ids, stamp, filestamp.Stamp{}
	return nil
}

// drops reports whether next lacks an id of cur.
func drops(cur, next map[string]bool) bool {
	for id := range cur {
		if !next[id] {
			return true
		}
	}
	return false
}

func (r *revocationList) revoked(jti string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshLocked()
	return r.ids[jti]
}

// snapshot returns the ids in force, after reading the file again if it
// may have changed. The map is never written afterwards.
func (r *revocationList) snapshot() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshLocked()
	return r.ids
}

// refreshLocked reads the file again when revokedRecheck has passed since
// the last look and its stamp moved.
func (r *revocationList) refreshLocked() {
	if now := r.now(); now.Sub(r.checked) >= revokedRecheck {
		r.checked = now
		fi, err := os.Stat(r.path)
		switch {
		case err != nil:
			slog.Error("revoked tokens file unreadable; keeping last list", "path", r.path, "err", err)
		case filestamp.Of(fi) != r.stamp:
			if err := r.loadLocked(fi); err != nil {
				slog.Error("revoked tokens file reload failed; keeping last list", "path", r.path, "err", err)
			} else if r.pending != (filestamp.Stamp{}) {
				slog.Info("revoked tokens file drops ids; added its new ones, dropping at the next check if it is unchanged", "path", r.path, "count", len(r.ids))
			} else {
				slog.Info("revoked tokens reloaded", "path", r.path, "count", len(r.ids))
			}
		}
	}
}
