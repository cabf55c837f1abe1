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
// same-size rewrite that keeps the old mtime). If the file later becomes
// unreadable the last list stays in force: a revocation is never undone
// by accident.
type revocationList struct {
	path string
	now  func() time.Time

	mu      sync.Mutex
	ids     map[string]bool
	checked time.Time
	stamp   filestamp.Stamp
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
	r.ids, r.stamp = ids, filestamp.Of(fi)
	return nil
}

func (r *revocationList) revoked(jti string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= revokedRecheck {
		r.checked = now
		fi, err := os.Stat(r.path)
		switch {
		case err != nil:
			slog.Error("revoked tokens file unreadable; keeping last list", "path", r.path, "err", err)
		case filestamp.Of(fi) != r.stamp:
			if err := r.loadLocked(fi); err != nil {
				slog.Error("revoked tokens file reload failed; keeping last list", "path", r.path, "err", err)
			} else {
				slog.Info("revoked tokens reloaded", "path", r.path, "count", len(r.ids))
			}
		}
	}
	return r.ids[jti]
}
