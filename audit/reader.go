package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// maxLine bounds one JSON line when reading (a statement can be long).
const maxLine = 16 << 20

// Filter selects events when reading. The zero Filter selects everything.
type Filter struct {
	// Blocked keeps only denied statements and failed authentications.
	Blocked bool
	// Agent keeps only this agent's events.
	Agent string
	// Since keeps only events at or after this time.
	Since time.Time
	// Limit keeps only the newest Limit events; 0 means all.
	Limit int
}

// Blocked reports whether ev records something keyhole refused: a denied
// statement or a failed authentication.
func (ev *Event) Blocked() bool {
	return ev.Kind == KindStatement && ev.Decision == sqlpolicy.Deny || ev.Kind == KindAuthFailed
}

// Match reports whether ev passes f (ignoring Limit).
func (f Filter) Match(ev *Event) bool {
	if f.Blocked && !ev.Blocked() {
		return false
	}
	if f.Agent != "" && ev.Agent != f.Agent {
		return false
	}
	if !f.Since.IsZero() && ev.Time.Before(f.Since) {
		return false
	}
	return true
}

// ReadFile returns the events of the audit file at path and of its rotated
// files (path.1, path.2, …) that match f, newest first. Lines that are not
// valid JSON events (e.g. one torn by a crash) are skipped and logged.
func ReadFile(path string, f Filter) ([]Event, error) {
	files := []string{path}
	for i := 1; ; i++ {
		p := path + "." + strconv.Itoa(i)
		if _, err := os.Stat(p); err != nil {
			break
		}
		files = append(files, p)
	}
	var out []Event
	for i, p := range files {
		evs, err := readOne(p, f)
		if err != nil {
			if i == 0 && errors.Is(err, os.ErrNotExist) && len(files) > 1 {
				// Rotation in progress: path was just renamed.
				continue
			}
			return nil, err
		}
		// Lines are in write order: reverse for newest first.
		slices.Reverse(evs)
		out = append(out, evs...)
		if f.Limit > 0 && len(out) >= f.Limit {
			// Older files hold only older events.
			break
		}
	}
	// Writers append in time order, but events from concurrent sessions
	// may carry slightly out-of-order times; sort by time, newest first,
	// keeping file order for ties.
	slices.SortStableFunc(out, func(a, b Event) int { return b.Time.Compare(a.Time) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func readOne(path string, f Filter) ([]Event, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open audit file: %w", err)
	}
	defer fh.Close()
	evs, skipped, err := Read(fh, f)
	if err != nil {
		return nil, fmt.Errorf("read audit file %s: %w", path, err)
	}
	if skipped > 0 {
		slog.Warn("audit: skipped unreadable lines", "file", path, "lines", skipped)
	}
	return evs, nil
}

// Read decodes JSON lines from r in order, keeping those matching f (Limit
// is not applied). skipped counts lines that are not valid events.
func Read(r io.Reader, f Filter) (evs []Event, skipped int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var ev Event
		if err := json.Unmarshal(line, &ev); err != nil || ev.Kind == "" {
			skipped++
			continue
		}
		if f.Match(&ev) {
			evs = append(evs, ev)
		}
	}
	return evs, skipped, sc.Err()
}
