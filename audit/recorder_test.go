package audit_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

func stmt(session string, i int) audit.Event {
	return audit.Event{
		Kind:      audit.KindStatement,
		Session:   session,
		Agent:     "sales",
		Statement: "SELECT " + strconv.Itoa(i),
		Decision:  sqlpolicy.Allow,
		Rows:      int64(i),
	}
}

// lines reads every JSON line of the given files.
func lines(t *testing.T, paths ...string) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var ev audit.Event
			require.NoError(t, json.Unmarshal(sc.Bytes(), &ev), sc.Text())
			out = append(out, ev)
		}
		require.NoError(t, sc.Err())
		f.Close()
	}
	return out
}

// recordFrom starts writers goroutines, each recording each statements of
// its own session, and returns a function that waits for them.
func recordFrom(r audit.Recorder, writers, each int) (wait func()) {
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r.Record(stmt(fmt.Sprintf("s%d", w), i))
			}
		}()
	}
	return wg.Wait
}

func TestFileRecorderConcurrentNothingLost(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	// A tiny buffer makes Record block often: blocking, never dropping.
	r, err := audit.NewFileRecorder(path, audit.FileOptions{Buffer: 4})
	require.NoError(t, err)

	const writers, each = 8, 500
	recordFrom(r, writers, each)()
	require.NoError(t, r.Close())
	require.NoError(t, r.Close(), "Close is idempotent")

	evs := lines(t, path)
	require.Len(t, evs, writers*each)
	seen := map[string]int{}
	for _, ev := range evs {
		assert.False(t, ev.Time.IsZero(), "time is filled in")
		seen[ev.Session]++
	}
	for w := range writers {
		assert.Equal(t, each, seen[fmt.Sprintf("s%d", w)])
	}
	assert.Equal(t, uint64(writers*each), r.Written())

	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestFileRecorderRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	line, err := json.Marshal(stmt("s", 100))
	require.NoError(t, err)
	// Room for ~10 lines per file.
	maxBytes := int64(len(line)+60) * 10
	r, err := audit.NewFileRecorder(path, audit.FileOptions{MaxBytes: maxBytes, MaxBackups: 3})
	require.NoError(t, err)
	assert.True(t, r.Rotates())
	const n = 35
	for i := range n {
		r.Record(stmt("s", 100+i))
	}
	require.NoError(t, r.Close())

	files := []string{path + ".3", path + ".2", path + ".1", path}
	for _, p := range files {
		if fi, err := os.Stat(p); err == nil {
			assert.LessOrEqual(t, fi.Size(), maxBytes, p)
		}
	}
	_, err = os.Stat(path + ".4")
	assert.ErrorIs(t, err, os.ErrNotExist, "at most MaxBackups rotated files")

	// Oldest file first: the kept events are the newest ones, in order,
	// with no gap.
	evs := lines(t, files...)
	require.NotEmpty(t, evs)
	last := evs[len(evs)-1]
	assert.Equal(t, "SELECT 134", last.Statement)
	for i := 1; i < len(evs); i++ {
		assert.Equal(t, evs[i-1].Rows+1, evs[i].Rows)
	}
	assert.Greater(t, len(evs), 25)
}

// readFIFO reads the FIFO at path to its end (its writer's close) and
// sends what it read. Opening either end of a FIFO waits for the other.
func readFIFO(path string) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		f, err := os.Open(path)
		if err != nil {
			got <- nil
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		got <- b
	}()
	return got
}

// smallFiles is FileOptions that would rotate every few events.
func smallFiles(t *testing.T) audit.FileOptions {
	line, err := json.Marshal(stmt("s", 100))
	require.NoError(t, err)
	return audit.FileOptions{MaxBytes: int64(len(line)+60) * 3, MaxBackups: 2}
}

// A FIFO (as /dev/stdout is under a container runtime, or a device such
// as /dev/null) is written through: renaming it for a rotation would move
// the node and leave a regular file in its place, and it cannot be
// fsynced.
func TestFileRecorderWritesThroughAFIFO(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.fifo")
	require.NoError(t, syscall.Mkfifo(path, 0o600))
	got := readFIFO(path)
	r, err := audit.NewFileRecorder(path, smallFiles(t))
	require.NoError(t, err)
	assert.False(t, r.Rotates())
	const n = 20
	for i := range n {
		r.Record(stmt("s", i))
	}
	require.NoError(t, r.Close(), "closing a FIFO is no error")
	b := <-got
	assert.Equal(t, n, bytes.Count(b, []byte("\n")), "every event came through the FIFO")

	fi, err := os.Lstat(path)
	require.NoError(t, err)
	assert.Equal(t, os.ModeNamedPipe, fi.Mode().Type(), "the FIFO is where it was")
	_, err = os.Lstat(path + ".1")
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing was rotated")
}

// A FIFO that no process reads yet: the recorder waits for a reader (and
// logs that it waits) as open(2) would, then writes to it.
func TestFileRecorderWaitsForAFIFOReader(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.fifo")
	require.NoError(t, syscall.Mkfifo(path, 0o600))
	opened := make(chan *audit.FileRecorder, 1)
	go func() {
		r, err := audit.NewFileRecorder(path, audit.FileOptions{})
		assert.NoError(t, err)
		opened <- r
	}()
	// Waiting leaves no trace to wait on: a recorder that did not wait
	// would have returned well within this.
	select {
	case <-opened:
		t.Fatal("the recorder opened a FIFO that no process reads")
	case <-time.After(100 * time.Millisecond):
	}
	got := readFIFO(path)
	r := <-opened
	require.NotNil(t, r)
	for i := range 3 {
		r.Record(stmt("s", i))
	}
	require.NoError(t, r.Close())
	assert.Equal(t, 3, bytes.Count(<-got, []byte("\n")))
}

// When a FIFO's reader goes, the events that follow wait (as for any write
// that fails) and reach the next reader.
func TestFileRecorderFIFONextReader(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.fifo")
	require.NoError(t, syscall.Mkfifo(path, 0o600))
	// readLines reads n lines from the FIFO, opening it again whenever
	// its writer closed it (a reader that opens while the recorder drops
	// a broken FIFO meets the end of the stream), as a log shipper does.
	readLines := func(n int) <-chan []audit.Event {
		out := make(chan []audit.Event, 1)
		go func() {
			var evs []audit.Event
			defer func() { out <- evs }()
			for deadline := time.Now().Add(20 * time.Second); len(evs) < n && time.Now().Before(deadline); {
				f, err := os.Open(path)
				if err != nil {
					return
				}
				sc := bufio.NewScanner(f)
				for len(evs) < n && sc.Scan() {
					var ev audit.Event
					if json.Unmarshal(sc.Bytes(), &ev) == nil {
						evs = append(evs, ev)
					}
				}
				f.Close()
			}
		}()
		return out
	}
	first := readLines(5)
	r, err := audit.NewFileRecorder(path, audit.FileOptions{})
	require.NoError(t, err)
	for i := range 5 {
		r.Record(stmt("s", i))
	}
	require.Len(t, <-first, 5)
	// The first reader has closed its end: these five find no reader.
	for i := 5; i < 10; i++ {
		r.Record(stmt("s", i))
	}
	second := readLines(5)
	evs := <-second
	require.NoError(t, r.Close())
	require.Len(t, evs, 5, "the events written after the first reader left reach the second")
	for i, ev := range evs {
		assert.Equal(t, int64(5+i), ev.Rows)
	}
}

// A symbolic link is written through to its target and not rotated:
// renaming it would rotate the link, not the file.
func TestFileRecorderDoesNotRotateALink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target, link := filepath.Join(dir, "real.jsonl"), filepath.Join(dir, "audit.jsonl")
	require.NoError(t, os.Symlink(target, link))
	r, err := audit.NewFileRecorder(link, smallFiles(t))
	require.NoError(t, err)
	assert.False(t, r.Rotates())
	const n = 20
	for i := range n {
		r.Record(stmt("s", i))
	}
	require.NoError(t, r.Close())

	assert.Len(t, lines(t, target), n, "every event is in the link's target")
	to, err := os.Readlink(link)
	require.NoError(t, err)
	assert.Equal(t, target, to, "the link is where it was")
	for _, p := range []string{link + ".1", target + ".1"} {
		_, err = os.Lstat(p)
		assert.ErrorIs(t, err, os.ErrNotExist, "nothing was rotated: %s", p)
	}
}

// An external rotation (logrotate renames the file and creates a new one,
// or a deletion) is followed: the events after it go to a new file at the
// path, and none goes to the renamed or deleted one.
func TestFileRecorderFollowsExternalRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	r, err := audit.NewFileRecorder(path, audit.FileOptions{})
	require.NoError(t, err)
	record := func(from, to int) {
		for i := from; i < to; i++ {
			r.Record(stmt("s", i))
		}
	}
	written := func(p string, n int) {
		t.Helper()
		require.Eventually(t, func() bool {
			b, _ := os.ReadFile(p)
			return bytes.Count(b, []byte("\n")) == n
		}, 10*time.Second, 5*time.Millisecond, "%d lines in %s", n, p)
	}
	record(0, 5)
	written(path, 5)
	require.NoError(t, os.Rename(path, path+".1"))
	record(5, 10)
	written(path, 5)
	require.NoError(t, os.Remove(path))
	record(10, 15)
	require.NoError(t, r.Close())

	rows := func(evs []audit.Event) (out []int64) {
		for _, ev := range evs {
			out = append(out, ev.Rows)
		}
		return out
	}
	assert.Equal(t, []int64{0, 1, 2, 3, 4}, rows(lines(t, path+".1")), "the renamed file got nothing after the rename")
	assert.Equal(t, []int64{10, 11, 12, 13, 14}, rows(lines(t, path)), "the events after the deletion are in a new file")
}

func TestFileRecorderAppends(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	for round := range 2 {
		r, err := audit.NewFileRecorder(path, audit.FileOptions{})
		require.NoError(t, err)
		r.Record(stmt("s", round))
		require.NoError(t, r.Close())
	}
	assert.Len(t, lines(t, path), 2)
}

func TestRecordAfterClose(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	r, err := audit.NewFileRecorder(path, audit.FileOptions{})
	require.NoError(t, err)
	r.Record(stmt("s", 1))
	require.NoError(t, r.Close())
	assert.NotPanics(t, func() { r.Record(stmt("s", 2)) })
	assert.Equal(t, uint64(1), r.Lost(), "counted, not silently dropped")
	assert.Len(t, lines(t, path), 1)
}

func TestNewFileRecorderErrors(t *testing.T) {
	t.Parallel()
	_, err := audit.NewFileRecorder(filepath.Join(t.TempDir(), "no", "such", "dir", "a.jsonl"), audit.FileOptions{})
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, err = audit.NewFileRecorder(filepath.Join(t.TempDir(), "a"), audit.FileOptions{MaxBytes: -1})
	assert.Error(t, err)
}

// flakyWriter fails its first n writes.
type flakyWriter struct {
	mu    sync.Mutex
	fails int
	buf   bytes.Buffer
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fails > 0 {
		w.fails--
		return 0, errors.New("disk full")
	}
	return w.buf.Write(p)
}

func TestWriterRecorderRetriesFailedWrites(t *testing.T) {
	t.Parallel()
	w := &flakyWriter{fails: 2}
	r := audit.NewWriterRecorder(w)
	for i := range 3 {
		r.Record(stmt("s", i))
	}
	require.NoError(t, r.Close())
	w.mu.Lock()
	defer w.mu.Unlock()
	evs, skipped, err := audit.Read(&w.buf, audit.Filter{})
	require.NoError(t, err)
	assert.Zero(t, skipped)
	assert.Len(t, evs, 3, "a failed write is retried, not dropped")
	assert.NoError(t, r.Healthy())
}

// healthChecker is what the gateway's /healthz asks a recorder.
type healthChecker interface{ Healthy() error }

func TestTee(t *testing.T) {
	t.Parallel()
	var a, b bytes.Buffer
	r := audit.Tee(audit.NewWriterRecorder(&a), audit.NewWriterRecorder(&b))
	r.Record(audit.Event{Kind: audit.KindConnect, Session: "x", Time: time.Unix(1, 0)})
	h, ok := r.(healthChecker)
	require.True(t, ok, "Tee reports its sinks' health")
	require.NoError(t, h.Healthy())
	require.NoError(t, r.Close())
	assert.Equal(t, a.String(), b.String())
	assert.Contains(t, a.String(), `"kind":"connect"`)
}

type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, errors.New("device gone") }

func TestCloseReportsLostEvents(t *testing.T) {
	t.Parallel()
	r := audit.NewWriterRecorderGrace(brokenWriter{}, 200*time.Millisecond)
	r.Record(stmt("s", 1))
	r.Record(stmt("s", 2))
	require.Eventually(t, func() bool { return r.Healthy() != nil }, 5*time.Second, 10*time.Millisecond)
	err := r.Close()
	require.Error(t, err, "a loss is never silent")
	assert.ErrorIs(t, err, audit.ErrLost)
	assert.Equal(t, uint64(2), r.Lost())
}

// Records racing Close are each either written or counted as lost.
func TestRecordRacingClose(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	r, err := audit.NewFileRecorder(path, audit.FileOptions{Buffer: 2})
	require.NoError(t, err)
	const writers, each = 4, 200
	wait := recordFrom(r, writers, each)
	// Close once the writer goroutine is busy: events are in flight.
	require.Eventually(t, func() bool { return r.Written() > 0 }, 10*time.Second, time.Millisecond)
	closeErr := r.Close()
	wait()
	written := len(lines(t, path))
	assert.Equal(t, uint64(written), r.Written())
	assert.Equal(t, writers*each, written+int(r.Lost()), "every event is written or counted")
	assertCloseErr(t, closeErr, r.Lost())
}

// assertCloseErr: Close reports a loss (ErrLost) exactly when events were
// lost.
func assertCloseErr(t *testing.T, closeErr error, lost uint64) {
	t.Helper()
	if lost == 0 {
		assert.NoError(t, closeErr)
		return
	}
	assert.ErrorIs(t, closeErr, audit.ErrLost)
}

// gatedWriter blocks every Write until the gate is closed, telling entered
// when the first one starts.
type gatedWriter struct {
	entered chan struct{}
	once    sync.Once
	gate    chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
	writes  int
}

func newGatedWriter() *gatedWriter {
	return &gatedWriter{entered: make(chan struct{}), gate: make(chan struct{})}
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.gate
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

// A full queue makes Record wait for the writer: back-pressure, not loss.
func TestRecordBlocksWhenFull(t *testing.T) {
	t.Parallel()
	w := newGatedWriter()
	r := audit.NewWriterRecorderBuffer(w, 4)
	r.Record(stmt("s", 0))
	<-w.entered // the writer holds event 0 and is stuck in Write

	const n = 20
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		for i := 1; i < n; i++ {
			r.Record(stmt("s", i))
		}
	}()
	require.Eventually(t, func() bool { return r.Waiting() == 1 }, 10*time.Second, time.Millisecond,
		"the fifth queued Record waits for room")
	select {
	case <-returned:
		t.Fatal("Records returned while the sink was stuck and the queue full")
	default:
	}
	close(w.gate)
	<-returned
	require.NoError(t, r.Close())
	assert.Zero(t, r.Lost())
	evs, skipped, err := audit.Read(&w.buf, audit.Filter{})
	require.NoError(t, err)
	assert.Zero(t, skipped)
	require.Len(t, evs, n)
	for i, ev := range evs {
		assert.Equal(t, int64(i), ev.Rows, "in order")
	}
	assert.Less(t, w.writes, n, "events are written in batches")
}

// Records waiting for room hand their encoders back to be used by other
// Records meanwhile; each still writes its own line.
func TestWaitingRecordsKeepTheirLines(t *testing.T) {
	t.Parallel()
	w := newGatedWriter()
	r := audit.NewWriterRecorderBuffer(w, 2)
	r.Record(stmt("first", 0))
	<-w.entered // the writer is stuck in Write: the queue fills
	const sessions, each = 6, 10
	wait := recordFrom(r, sessions, each)
	require.Eventually(t, func() bool { return r.Waiting() == sessions }, 10*time.Second, time.Millisecond,
		"every session waits for room")
	close(w.gate)
	wait()
	require.NoError(t, r.Close())
	evs, skipped, err := audit.Read(&w.buf, audit.Filter{})
	require.NoError(t, err)
	assert.Zero(t, skipped)
	require.Len(t, evs, 1+sessions*each)
	seen := map[string]int{}
	for _, ev := range evs[1:] {
		assert.Equal(t, "SELECT "+strconv.FormatInt(ev.Rows, 10), ev.Statement, "the line of its own Record")
		assert.Equal(t, int64(seen[ev.Session]), ev.Rows, "a session's events in order")
		seen[ev.Session]++
	}
	assert.Len(t, seen, sessions)
}

// Without Close, a recorded event reaches the file on its own (within the
// flush interval; the test waits for it rather than timing it).
func TestFileRecorderFlushesWithoutClose(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	r, err := audit.NewFileRecorder(path, audit.FileOptions{FlushInterval: time.Millisecond})
	require.NoError(t, err)
	defer r.Close()
	r.Record(stmt("s", 1))
	require.Eventually(t, func() bool {
		evs, err := audit.ReadFile(path, audit.Filter{})
		return err == nil && len(evs) == 1
	}, 10*time.Second, time.Millisecond)
	// The writer counts a batch once its write has returned, so the line
	// can be in the file a moment before it is counted.
	require.Eventually(t, func() bool { return r.Written() == 1 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, uint64(1), r.Written())
}

// Concurrent writers, rotation every few lines and a Close racing the
// writers: every event is either in exactly one file, whole, or counted as
// lost; no file passes MaxBytes; each session's events keep their order.
func TestFileRecorderConcurrentRotationAndClose(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	line, err := json.Marshal(stmt("s0", 100))
	require.NoError(t, err)
	maxBytes := int64(len(line)+60) * 25
	const writers, each = 8, 300
	r, err := audit.NewFileRecorder(path, audit.FileOptions{MaxBytes: maxBytes, MaxBackups: 200, Buffer: 16})
	require.NoError(t, err)
	var recorded sync.WaitGroup
	started := make(chan struct{}, writers)
	for w := range writers {
		recorded.Add(1)
		go func() {
			defer recorded.Done()
			for i := range each {
				if i == each/2 {
					started <- struct{}{}
				}
				r.Record(stmt(fmt.Sprintf("s%d", w), 100+i))
			}
		}()
	}
	for range writers {
		<-started // every writer is halfway through
	}
	closeErr := r.Close()
	recorded.Wait()

	var files []string
	for i := 200; i >= 1; i-- {
		files = append(files, path+"."+strconv.Itoa(i))
	}
	files = append(files, path)
	for _, p := range files {
		if fi, err := os.Stat(p); err == nil {
			assert.LessOrEqual(t, fi.Size(), maxBytes, p)
		}
	}
	evs := lines(t, files...) // fails on a torn line
	assert.Equal(t, uint64(len(evs)), r.Written())
	assert.Equal(t, writers*each, len(evs)+int(r.Lost()), "every event written or counted")
	assert.GreaterOrEqual(t, len(evs), writers*each/2, "what was recorded before Close is written")
	last := map[string]int64{}
	for _, ev := range evs {
		prev, ok := last[ev.Session]
		if ok {
			assert.Equal(t, prev+1, ev.Rows, "session %s in order, no gap", ev.Session)
		}
		last[ev.Session] = ev.Rows
	}
	assertCloseErr(t, closeErr, r.Lost())
}

// A full queue is written at once, not after the flush interval: with an
// hour's interval and room for 4 events, 100 events still go through
// (without the early flush this test would block for hours).
func TestFullQueueFlushesEarly(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	r, err := audit.NewFileRecorder(path, audit.FileOptions{Buffer: 4, FlushInterval: time.Hour})
	require.NoError(t, err)
	const n = 100
	for i := range n {
		r.Record(stmt("s", i))
	}
	assert.GreaterOrEqual(t, r.Written(), uint64(n-2*4), "all but the queued tail written before Close")
	require.NoError(t, r.Close())
	assert.Len(t, lines(t, path), n)
}

// An event with a field encoding/json cannot write (a time RFC 3339 cannot
// hold, a non-finite duration) is written with that field replaced, not
// lost.
func TestUnencodableFieldsAreReplaced(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	r := audit.NewWriterRecorder(&buf)
	ev := stmt("s", 1)
	ev.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	ev.DurationMS = math.NaN()
	r.Record(ev)
	require.NoError(t, r.Close())
	assert.Zero(t, r.Lost())
	evs, skipped, err := audit.Read(&buf, audit.Filter{})
	require.NoError(t, err)
	assert.Zero(t, skipped)
	require.Len(t, evs, 1)
	assert.Equal(t, "SELECT 1", evs[0].Statement)
	assert.Less(t, evs[0].Time.Year(), 10000)
	assert.Zero(t, evs[0].DurationMS)
}
