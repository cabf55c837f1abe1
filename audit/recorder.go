package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultBuffer is how many events a recorder queues before Record blocks.
const DefaultBuffer = 1024

// DefaultFlushInterval is how long a recorder gathers events before it
// writes them (FileOptions.FlushInterval).
const DefaultFlushInterval = 5 * time.Millisecond

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

// flushAt is how many queued bytes make the writer write at once rather
// than wait out the flush interval.
const flushAt = 64 << 10

// keepBuf is the largest batch buffer kept for reuse; a larger one (a burst
// of huge statements) is left to the garbage collector.
const keepBuf = 1 << 20

// sink is where a pipeline writes. The pipeline does its own buffering (a
// bufio.Writer's errors are sticky, which would turn one failed write into
// lost events), so a sink writes straight through.
type sink interface {
	write(p []byte) (int, error)
	// fits returns how many bytes of b, whole lines, can be written before
	// the sink must rotate: len(b) when all of them, 0 when the next line
	// needs a fresh file first.
	fits(b []byte) int
	rotate() error
	close() error // fsync where possible and release
	// follow is called before each batch: a file sink whose path no
	// longer names the open file (renamed away by logrotate, deleted)
	// lets it go, so that the batch opens the path anew.
	follow()
}

// pipeline is the queue and the writer goroutine shared by FileRecorder
// and WriterRecorder.
//
// Record encodes the event in its own goroutine and appends the line to
// buf under mu; the writer goroutine wakes when buf stops being empty,
// waits out the flush interval (or until flushAt bytes are queued) so that
// one write carries many events, swaps buf for an empty buffer and writes
// the batch. While events keep coming the writer does not wait to be
// woken: after a batch it sleeps one interval and writes what came
// meanwhile, so a busy proxy makes one write and one writer wake-up per
// interval, not one per statement (nor two per interval: a wake-up by the
// first event and one by the timer; on a VM each costs the Go scheduler
// and the kernel some 10 µs). A sleep that finds nothing queued ends the
// flow: the next event wakes the writer again.
type pipeline struct {
	mu      sync.Mutex
	buf     []byte        // encoded lines queued for the writer
	nbuf    int           // events in buf
	first   time.Time     // when buf last stopped being empty
	ready   sync.Cond     // writer waits for buf to fill (or for Close)
	space   sync.Cond     // Records wait for buf to drain below max
	waiting int           // Records waiting on space
	closed  bool          // Close was called: Records not yet waiting are lost
	full    chan struct{} // cap 1: buf passed flushAt or max, write now
	quit    chan struct{} // closed by Close: write at once from now on
	done    chan struct{} // closed when the writer has written everything
	stop    chan struct{} // closed when Close's grace period ends: stop retrying

	max      int           // events queued before Record blocks
	interval time.Duration // how long the writer gathers a batch
	sink     sink

	closeOnce sync.Once
	lost      atomic.Uint64
	written   atomic.Uint64
	lastErr   atomic.Pointer[error]
	closeErr  error
	grace     time.Duration // closeGrace; shorter in tests
}

func newPipeline(s sink, buffer int, interval time.Duration) *pipeline {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	if interval <= 0 {
		interval = DefaultFlushInterval
	}
	p := &pipeline{
		full: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}), stop: make(chan struct{}),
		max: buffer, interval: interval, sink: s, grace: closeGrace,
	}
	p.ready.L, p.space.L = &p.mu, &p.mu
	go p.run()
	return p
}

// encoders holds the encoders Record uses (their line buffers and memos),
// so that encoding happens outside mu without allocating.
var encoders = sync.Pool{New: func() any { return &encoder{line: make([]byte, 0, 1024)} }}

// release returns e to encoders.
func (e *encoder) release() {
	if cap(e.line) > 64<<10 {
		e.line = make([]byte, 0, 1024) // a huge statement's buffer is not kept
	}
	encoders.Put(e)
}

// record queues *ev (the recorder's Record's own copy, which it may
// change), blocking while Buffer events are queued. A zero Time is set to
// now.
func (p *pipeline) record(ev *Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	redactEvent(ev)
	enc := encoders.Get().(*encoder)
	defer func() {
		if enc != nil {
			enc.release()
		}
	}()
	line, err := enc.appendEvent(enc.line[:0], ev)
	if err != nil {
		// A time RFC 3339 cannot hold or a non-finite duration: keep the
		// event with those fields replaced rather than lose it.
		slog.Warn("audit: event field not encodable; replaced", "kind", ev.Kind, "session", ev.Session, "err", err)
		if _, terr := ev.Time.AppendText(nil); terr != nil {
			ev.Time = time.Now().UTC()
		}
		if math.IsNaN(ev.DurationMS) || math.IsInf(ev.DurationMS, 0) {
			ev.DurationMS = 0
		}
		line, err = enc.appendEvent(enc.line[:0], ev)
	}
	if err != nil {
		p.lost.Add(1)
		slog.Error("audit: event not encodable; lost", "kind", ev.Kind, "session", ev.Session, "err", err)
		return
	}
	line = append(line, '\n')
	enc.line = line

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.lost.Add(1)
		slog.Error("audit: event recorded after Close; lost", "kind", ev.Kind, "session", ev.Session, "agent", ev.Agent)
		return
	}
	// Back-pressure: wait for the writer rather than drop. A Record that
	// waits here before Close is written even if Close comes meanwhile.
	for p.nbuf >= p.max {
		if enc != nil {
			// Hand the encoder (its memos are some kilobytes) back
			// while waiting, keeping only the line: a stalled sink
			// can keep every session waiting here.
			line = slices.Clone(line)
			enc.release()
			enc = nil
		}
		p.flushNow()
		p.waiting++
		p.space.Wait()
		p.waiting--
	}
	was := len(p.buf)
	p.buf = append(p.buf, line...)
	p.nbuf++
	if was == 0 {
		p.first = time.Now()
		p.ready.Signal()
	}
	if was < flushAt && len(p.buf) >= flushAt {
		p.flushNow()
	}
	p.mu.Unlock()
}

// flushNow tells the writer not to wait out the interval.
func (p *pipeline) flushNow() {
	select {
	case p.full <- struct{}{}:
	default:
	}
}

func (p *pipeline) run() {
	defer close(p.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var spare []byte
	flowing := false // the last batch was written: sleep, then look
	for {
		p.mu.Lock()
		ticked := false
		if flowing && p.nbuf == 0 && !p.closed {
			// Every event queued during this sleep is written when it
			// ends, less than one interval after it came.
			p.mu.Unlock()
			p.sleep(timer, p.interval)
			p.mu.Lock()
			ticked = true
		}
		if p.nbuf == 0 {
			// Idle (or the sleep found nothing): the next event wakes
			// the writer, which then gathers for an interval.
			flowing, ticked = false, false
		}
		for p.nbuf == 0 && !(p.closed && p.waiting == 0) {
			p.ready.Wait()
		}
		if p.nbuf == 0 {
			// Closed, and no Record is left waiting to queue.
			p.mu.Unlock()
			return
		}
		closing, wait := p.closed, p.interval-time.Since(p.first)
		p.mu.Unlock()
		if !closing && !ticked && wait > 0 {
			// Gather until the oldest queued event is one interval old.
			p.sleep(timer, wait)
		}
		p.mu.Lock()
		batch, events := p.buf, p.nbuf
		p.buf, p.nbuf = spare[:0], 0
		p.space.Broadcast()
		p.mu.Unlock()
		p.writeBatch(batch, events)
		flowing = true
		spare = nil
		if cap(batch) <= keepBuf {
			spare = batch
		}
	}
}

// sleep waits d on timer, or less when flushNow or Close asks for a write.
func (p *pipeline) sleep(timer *time.Timer, d time.Duration) {
	timer.Reset(d)
	select {
	case <-timer.C:
	case <-p.full:
		timer.Stop()
	case <-p.quit:
		timer.Stop()
	}
}

// writeBatch writes whole lines, the given number of them, rotating the
// sink between lines when the next one would pass its size limit.
func (p *pipeline) writeBatch(b []byte, lines int) {
	p.sink.follow()
	for len(b) > 0 {
		n := p.sink.fits(b)
		if n == 0 {
			if p.retry("rotate", p.sink.rotate) {
				continue
			}
			slog.Error("audit: rotation failed during Close; writing on to the current file")
			n = bytes.IndexByte(b, '\n') + 1
		}
		// Lines are counted only when the batch is split (a rotation):
		// an event's line has exactly one newline, its last byte.
		events := lines
		if n < len(b) {
			events = bytes.Count(b[:n], []byte{'\n'})
		}
		p.flush(b[:n], uint64(events))
		lines -= events
		b = b[n:]
	}
}

// flush writes chunk (whole lines, events of them), retrying failed writes
// until they succeed or Close gives up. A partial write is resumed where it
// stopped, so a line torn by a failure is completed by the retry.
func (p *pipeline) flush(chunk []byte, events uint64) {
	rest := chunk
	ok := p.retry("write", func() error {
		n, err := p.sink.write(rest)
		rest = rest[n:]
		if err == nil && len(rest) > 0 {
			err = io.ErrShortWrite
		}
		return err
	})
	if ok {
		p.written.Add(events)
		return
	}
	// Lines written whole before the failure count as written.
	done := uint64(bytes.Count(chunk[:len(chunk)-len(rest)], []byte{'\n'}))
	p.written.Add(done)
	p.lost.Add(events - done)
	slog.Error("audit: write failed during Close; events lost", "events", events-done)
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

// Close stops accepting events, writes every queued event (and those of
// Records already waiting for room) and fsyncs. It returns an error if any
// event was lost. Close is idempotent.
func (p *pipeline) Close() error {
	p.closeOnce.Do(func() {
		timer := time.AfterFunc(p.grace, func() { close(p.stop) })
		p.mu.Lock()
		p.closed = true
		p.ready.Signal()
		p.mu.Unlock()
		close(p.quit)
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

// Record queues ev, blocking while Buffer events are queued. A zero Time
// is set to now.
func (r *WriterRecorder) Record(ev Event) { r.record(&ev) }

// NewWriterRecorder returns a recorder writing one JSON line per event to
// w. Close syncs w if it is a regular *os.File; it does not close w.
func NewWriterRecorder(w io.Writer) *WriterRecorder {
	return &WriterRecorder{newPipeline(writerSink{w}, 0, 0)}
}

type writerSink struct{ w io.Writer }

func (s writerSink) write(p []byte) (int, error) { return s.w.Write(p) }
func (s writerSink) fits(b []byte) int           { return len(b) }
func (s writerSink) rotate() error               { return nil }
func (s writerSink) follow()                     {}
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
	// Buffer is how many queued events make Record block; 0 means
	// DefaultBuffer.
	Buffer int
	// FlushInterval is how long events are gathered before they are
	// written; 0 means DefaultFlushInterval.
	FlushInterval time.Duration
}

// FileRecorder appends JSON lines to a file (mode 0600), rotating by size.
//
// An external rotation is followed: when the path no longer names the open
// file (logrotate renamed it, or it was deleted), the next batch goes to a
// new file at the path; no signal is needed.
//
// A path that is not a regular file of its own (a device such as
// /dev/stdout or /dev/null, a FIFO, a symbolic link) is written through as
// a stream: never rotated, since renaming it would move the device node or
// the link rather than start a new file. A device or FIFO is not fsynced
// either: a pipe or a terminal cannot be. A FIFO that no process reads is
// waited for at start (with a warning logged); one whose reader goes holds
// the events back, as any failed write does, and is opened again for the
// next reader.
type FileRecorder struct {
	*pipeline
	stream bool
}

var _ Recorder = (*FileRecorder)(nil)

// Record queues ev, blocking while Buffer events are queued. A zero Time
// is set to now.
func (r *FileRecorder) Record(ev Event) { r.record(&ev) }

// NewFileRecorder opens (creating or appending to) path.
func NewFileRecorder(path string, opts FileOptions) (*FileRecorder, error) {
	if opts.MaxBytes < 0 || opts.MaxBackups < 0 {
		return nil, fmt.Errorf("audit file %s: negative MaxBytes or MaxBackups", path)
	}
	if opts.MaxBackups == 0 {
		opts.MaxBackups = DefaultMaxBackups
	}
	s := &fileSink{path: path, opts: opts}
	if err := s.open(true); err != nil {
		return nil, err
	}
	return &FileRecorder{newPipeline(s, opts.Buffer, opts.FlushInterval), s.stream}, nil
}

// Rotates reports whether the recorder rotates its file by size: false
// for a path that is not a regular file of its own (see FileRecorder).
func (r *FileRecorder) Rotates() bool { return !r.stream }

type fileSink struct {
	path string
	opts FileOptions
	f    *os.File
	fi   os.FileInfo // f's, at open
	size int64
	// stream: path is not a regular file of its own (see FileRecorder):
	// it is not rotated. special: what it opens is not a regular file but
	// a device or FIFO (a link's target can be regular, and is fsynced).
	stream, special bool
}

// open opens path for appending. A FIFO that no process reads fails with
// ENXIO unless waitReader: then open logs that it waits and waits for a
// reader (as open(2) does), which only the first open does — a writer's
// retry must not block Close.
func (s *fileSink) open(waitReader bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	fifo := false
	if fi, err := os.Stat(s.path); err == nil && fi.Mode().Type() == fs.ModeNamedPipe {
		// O_NONBLOCK: opening a FIFO for writing fails at once (ENXIO)
		// rather than wait when no process reads it. (Writes still wait
		// for room: Go's poller waits out EAGAIN.)
		fifo = true
		flags |= syscall.O_NONBLOCK
	}
	f, err := os.OpenFile(s.path, flags, 0o600)
	if fifo && errors.Is(err, syscall.ENXIO) {
		if !waitReader {
			return fmt.Errorf("open audit file: %s is a FIFO that no process reads", s.path)
		}
		slog.Warn("audit: the audit file is a FIFO that no process reads yet; waiting for a reader", "path", s.path)
		f, err = os.OpenFile(s.path, flags&^syscall.O_NONBLOCK, 0o600)
	}
	if err != nil {
		return fmt.Errorf("open audit file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat audit file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		s.stream, s.special = true, true
	} else if li, err := os.Lstat(s.path); err != nil || !li.Mode().IsRegular() {
		// A link to a regular file: rotating would rename the link.
		s.stream = true
	}
	s.f, s.fi, s.size = f, fi, fi.Size()
	return nil
}

// follow lets the open file go when the path no longer names it: an
// external rotation (logrotate's default renames the file and creates a
// new one) or a deletion would otherwise leave keyhole writing to a file
// that is rotated on, compressed or deleted, and the events would be
// lost. It also takes the file's size from the file system, which
// logrotate's copytruncate shrinks. A stream is left alone.
func (s *fileSink) follow() {
	if s.f == nil || s.stream {
		return
	}
	fi, err := os.Stat(s.path)
	switch {
	case err == nil && os.SameFile(fi, s.fi):
		s.size = fi.Size()
		return
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return // unknown: write on where we are
	}
	if err := s.close(); err != nil {
		slog.Error("audit: closing the audit file that was renamed or deleted", "path", s.path, "err", err)
	}
}

func (s *fileSink) write(p []byte) (int, error) {
	if s.f == nil {
		// A failed rotation, a file renamed away or deleted (follow), or
		// a FIFO's broken pipe left no file open: open the path anew.
		if err := s.open(false); err != nil {
			return 0, err
		}
	}
	n, err := s.f.Write(p)
	s.size += int64(n)
	if err != nil {
		if s.special {
			// A FIFO whose reader went (EPIPE) takes nothing more: the
			// retry opens it again, for the next reader.
			_ = s.f.Close()
			s.f = nil
		}
		return n, fmt.Errorf("write audit file: %w", err)
	}
	return n, nil
}

func (s *fileSink) fits(b []byte) int {
	if s.stream || s.opts.MaxBytes <= 0 || s.size+int64(len(b)) <= s.opts.MaxBytes {
		return len(b)
	}
	room := max(s.opts.MaxBytes-s.size, 0)
	n := bytes.LastIndexByte(b[:min(room, int64(len(b)))], '\n') + 1
	if n == 0 && s.size == 0 {
		// A line longer than MaxBytes goes alone into a fresh file.
		n = bytes.IndexByte(b, '\n') + 1
	}
	return n
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
	return s.open(false)
}

func (s *fileSink) close() error {
	if s.f == nil {
		return nil
	}
	f := s.f
	s.f = nil
	if !s.special {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("sync audit file: %w", err)
		}
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

// healthChecker is a Recorder that can say whether it is still recording
// (the file recorder after a failed write).
type healthChecker interface{ Healthy() error }

// Healthy returns the first error of the recorders that report health.
func (t tee) Healthy() error {
	for _, r := range t {
		if h, ok := r.(healthChecker); ok {
			if err := h.Healthy(); err != nil {
				return err
			}
		}
	}
	return nil
}
