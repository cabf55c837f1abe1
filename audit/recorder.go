package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultBuffer is how many events a recorder queues before Record blocks.
const DefaultBuffer = 1024

// DefaultMaxBackups is how many rotated files are kept when MaxBytes is set
// and MaxBackups is zero.
const DefaultMaxBackups = 10

// ErrLost is returned (wrapped) by Close when events could not be written.
var ErrLost = errors.New("audit events lost")

// retry backoff for failed writes: the writer keeps the event and retries,
// so Record blocks (and the proxies stall) rather than run unaudited.
const (
	retryMin = 50 * time.Millisecond
	retryMax = 5 * time.Second
)

// flushAt is how many pending bytes the writer gathers before writing even
// though more events are queued.
const flushAt = 64 << 10

// sink is where a pipeline writes. The pipeline does its own buffering (a
// bufio.Writer's errors are sticky, which would turn one failed write into
// lost events), so a sink writes straight through.
type sink interface {
	write(p []byte) (int, error)
	// needRotate reports whether pending bytes and then a line of n bytes
	// would pass the size limit of a file that is not empty.
	needRotate(pending, n int) bool
	rotate() error
	close() error // fsync where possible and release
}

// pipeline is the buffered channel and the writer goroutine shared by
// FileRecorder and WriterRecorder.
type pipeline struct {
	ch   chan []byte
	done chan struct{}
	stop chan struct{} // closed when Close's grace period ends: stop retrying

	mu        sync.RWMutex // Record holds R while sending; Close holds W to close ch
	closed    bool
	closeOnce sync.Once

	sink     sink
	pending  []byte // encoded lines not yet written
	nPending uint64 // events in pending

	lost     atomic.Uint64
	written  atomic.Uint64
	lastErr  atomic.Pointer[error]
	closeErr error
	grace    time.Duration // closeGrace; shorter in tests
}

func newPipeline(s sink, buffer int) *pipeline {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	p := &pipeline{ch: make(chan []byte, buffer), done: make(chan struct{}), stop: make(chan struct{}), sink: s, grace: closeGrace}
	go p.run()
	return p
}

// Record queues ev, blocking while the buffer is full. A zero Time is set
// to now.
func (p *pipeline) Record(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	line, err := json.Marshal(ev)
	if err != nil {
		// Event has only plain fields; this cannot happen, but if it does
		// the loss is counted and logged.
		p.lost.Add(1)
		slog.Error("audit: event not encodable; lost", "kind", ev.Kind, "session", ev.Session, "err", err)
		return
	}
	line = append(line, '\n')
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		p.lost.Add(1)
		slog.Error("audit: event recorded after Close; lost", "kind", ev.Kind, "session", ev.Session, "agent", ev.Agent)
		return
	}
	p.ch <- line
}

func (p *pipeline) run() {
	defer close(p.done)
	for line := range p.ch {
		if p.sink.needRotate(len(p.pending), len(line)) {
			p.flush()
			if !p.retry("rotate", p.sink.rotate) {
				slog.Error("audit: rotation failed during Close; writing on to the current file")
			}
		}
		p.pending = append(p.pending, line...)
		p.nPending++
		// Write when the queue is drained, so a crash loses nothing that
		// was recorded a moment ago, or when enough is gathered.
		if len(p.ch) == 0 || len(p.pending) >= flushAt {
			p.flush()
		}
	}
	p.flush()
}

// flush writes pending, retrying failed writes until they succeed or Close
// gives up. A partial write is resumed where it stopped, so a line torn by a
// failure is completed by the retry.
func (p *pipeline) flush() {
	ok := p.retry("write", func() error {
		n, err := p.sink.write(p.pending)
		p.pending = p.pending[n:]
		if err == nil && len(p.pending) > 0 {
			err = io.ErrShortWrite
		}
		return err
	})
	if ok {
		p.written.Add(p.nPending)
	} else {
		p.lost.Add(p.nPending)
		slog.Error("audit: write failed during Close; events lost", "events", p.nPending)
	}
	p.pending, p.nPending = p.pending[:0], 0
}

// retry runs op until it succeeds, backing off, so the queue fills and
// Record blocks (the proxies stall) rather than run unaudited. After Close's
// grace period it makes one last attempt and reports false on failure.
func (p *pipeline) retry(what string, op func() error) bool {
	backoff := retryMin
	for {
		err := op()
		if err == nil {
			p.lastErr.Store(nil)
			return true
		}
		p.lastErr.Store(&err)
		slog.Error("audit: sink failed; retrying", "op", what, "err", err, "retry_in", backoff)
		select {
		case <-p.stop:
			return op() == nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, retryMax)
	}
}

// closeGrace bounds how long Close lets a writer retry a failing sink
// before each remaining write gets one last try.
const closeGrace = 10 * time.Second

// Close stops accepting events, writes every queued event and fsyncs. It
// returns an error if any event was lost. Close is idempotent.
func (p *pipeline) Close() error {
	p.closeOnce.Do(func() {
		// Started before taking the lock: Records blocked on a full queue
		// behind a failing sink hold the read lock until the writer moves.
		timer := time.AfterFunc(p.grace, func() { close(p.stop) })
		p.mu.Lock()
		p.closed = true
		close(p.ch)
		p.mu.Unlock()
		<-p.done
		timer.Stop()
		var errs []error
		if err := p.sink.close(); err != nil {
			errs = append(errs, err)
		}
		if n := p.lost.Load(); n > 0 {
			errs = append(errs, fmt.Errorf("%w: %d", ErrLost, n))
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// Healthy returns the last sink error if the most recent attempt failed,
// nil otherwise; for /healthz.
func (p *pipeline) Healthy() error {
	if e := p.lastErr.Load(); e != nil {
		return fmt.Errorf("audit sink: %w", *e)
	}
	return nil
}

// Lost is the number of events that could not be written (recorded after
// Close, or still failing at Close).
func (p *pipeline) Lost() uint64 { return p.lost.Load() }

// Written is the number of events written to the sink.
func (p *pipeline) Written() uint64 { return p.written.Load() }

// WriterRecorder writes JSON lines to an io.Writer (e.g. os.Stdout).
type WriterRecorder struct{ *pipeline }

var _ Recorder = (*WriterRecorder)(nil)

// NewWriterRecorder returns a recorder writing one JSON line per event to
// w. Close syncs w if it is a regular *os.File; it does not close w.
func NewWriterRecorder(w io.Writer) *WriterRecorder {
	return &WriterRecorder{newPipeline(writerSink{w}, 0)}
}

type writerSink struct{ w io.Writer }

func (s writerSink) write(p []byte) (int, error) { return s.w.Write(p) }
func (s writerSink) needRotate(int, int) bool    { return false }
func (s writerSink) rotate() error               { return nil }
func (s writerSink) close() error {
	if f, ok := s.w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			return f.Sync()
		}
	}
	return nil
}

// FileOptions configure a FileRecorder.
type FileOptions struct {
	// MaxBytes rotates the file before it would grow past this size;
	// 0 means never rotate.
	MaxBytes int64
	// MaxBackups is how many rotated files (path.1 newest … path.N) are
	// kept; 0 means DefaultMaxBackups. Older ones are deleted.
	MaxBackups int
	// Buffer is the queue length; 0 means DefaultBuffer.
	Buffer int
}

// FileRecorder appends JSON lines to a file (mode 0600), rotating by size.
type FileRecorder struct{ *pipeline }

var _ Recorder = (*FileRecorder)(nil)

// NewFileRecorder opens (creating or appending to) path.
func NewFileRecorder(path string, opts FileOptions) (*FileRecorder, error) {
	if opts.MaxBytes < 0 || opts.MaxBackups < 0 {
		return nil, fmt.Errorf("audit file %s: negative MaxBytes or MaxBackups", path)
	}
	if opts.MaxBackups == 0 {
		opts.MaxBackups = DefaultMaxBackups
	}
	s := &fileSink{path: path, opts: opts}
	if err := s.open(); err != nil {
		return nil, err
	}
	return &FileRecorder{newPipeline(s, opts.Buffer)}, nil
}

type fileSink struct {
	path string
	opts FileOptions
	f    *os.File
	size int64
}

func (s *fileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open audit file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat audit file: %w", err)
	}
	s.f, s.size = f, fi.Size()
	return nil
}

func (s *fileSink) write(p []byte) (int, error) {
	if s.f == nil {
		// A failed rotation left no file open: reopen.
		if err := s.open(); err != nil {
			return 0, err
		}
	}
	n, err := s.f.Write(p)
	s.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("write audit file: %w", err)
	}
	return n, nil
}

func (s *fileSink) needRotate(pending, n int) bool {
	before := s.size + int64(pending)
	return s.opts.MaxBytes > 0 && before > 0 && before+int64(n) > s.opts.MaxBytes
}

// rotate renames path.N-1 → path.N … path → path.1 (a rename replaces the
// oldest) and opens a new path.
func (s *fileSink) rotate() error {
	if err := s.close(); err != nil {
		return err
	}
	for i := s.opts.MaxBackups - 1; i >= 1; i-- {
		from := s.path + "." + strconv.Itoa(i)
		if err := os.Rename(from, s.path+"."+strconv.Itoa(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate audit file: %w", err)
		}
	}
	if err := os.Rename(s.path, s.path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rotate audit file: %w", err)
	}
	return s.open()
}

func (s *fileSink) close() error {
	if s.f == nil {
		return nil
	}
	f := s.f
	s.f = nil
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync audit file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close audit file: %w", err)
	}
	return nil
}

// Tee records every event to each of rs in order; Close closes them all.
func Tee(rs ...Recorder) Recorder { return tee(rs) }

type tee []Recorder

func (t tee) Record(ev Event) {
	for _, r := range t {
		r.Record(ev)
	}
}

func (t tee) Close() error {
	var errs []error
	for _, r := range t {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}

// Healthy returns the first error of the recorders that report health.
func (t tee) Healthy() error {
	for _, r := range t {
		if h, ok := r.(interface{ Healthy() error }); ok {
			if err := h.Healthy(); err != nil {
				return err
			}
		}
	}
	return nil
}
