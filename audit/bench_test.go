package audit_test

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// benchEvent is what keyhole records for one statement of pgbench -S.
func benchEvent() audit.Event {
	return audit.Event{
		Time:        time.Now(),
		Kind:        audit.KindStatement,
		Session:     "c3f1a9e07b2d4e61",
		Protocol:    "postgres",
		Client:      "127.0.0.1:51234",
		Agent:       "bench-agent",
		Role:        "bench",
		Database:    "keyhole_bench",
		Statement:   "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
		Fingerprint: "5c9e2f1d0a7b3e64",
		Decision:    sqlpolicy.Allow,
		Rule:        "roles.bench.allow[0]",
		DurationMS:  0.087,
		Rows:        1,
	}
}

// pgbenchLine is one statement event as keyhole writes it under pgbench -S
// (taken from a profiling run's audit file).
const pgbenchLine = `{"time":"2026-12-06T17:33:08.746523682Z","kind":"statement","session":"f9efeaa5111796be","protocol":"postgres","client":"127.0.0.1:39762","agent":"bench-agent","role":"bench","database":"kh_prof","statement":"SELECT abalance FROM pgbench_accounts WHERE aid = $1;","fingerprint":"d6f9f9407260ab6a","decision":"allow","rule":"roles.bench.allow[0].select","reasons":[{"code":"allowed_by_rule","rule":"roles.bench.allow[0].select"}],"duration_ms":1.494,"rows":1}`

// pgbenchEvent is the event of pgbenchLine, its time in the zone that
// time.Now gives (the line was written with Local being UTC).
func pgbenchEvent() audit.Event {
	return audit.Event{
		Time:        time.Date(2026, 12, 6, 17, 33, 8, 746523682, time.UTC).In(time.Local),
		Kind:        audit.KindStatement,
		Session:     "f9efeaa5111796be",
		Protocol:    "postgres",
		Client:      "127.0.0.1:39762",
		Agent:       "bench-agent",
		Role:        "bench",
		Database:    "kh_prof",
		Statement:   "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
		Fingerprint: "d6f9f9407260ab6a",
		Decision:    sqlpolicy.Allow,
		Rule:        "roles.bench.allow[0].select",
		Reasons:     []sqlpolicy.Reason{{Code: sqlpolicy.ReasonAllowedByRule, Rule: "roles.bench.allow[0].select"}},
		DurationMS:  1.494,
		Rows:        1,
	}
}

// BenchmarkEncode compares encoding/json with the appender keyhole uses.
func BenchmarkEncode(b *testing.B) {
	ev := benchEvent()
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			line, err := json.Marshal(&ev)
			if err != nil {
				b.Fatal(err)
			}
			_ = append(line, '\n')
		}
	})
	b.Run("appender", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		defer reportCPU(b)()
		for b.Loop() {
			line, err := audit.AppendEvent(buf[:0], &ev)
			if err != nil {
				b.Fatal(err)
			}
			buf = append(line, '\n')
		}
	})
	// The statement event of pgbenchLine, encoded over and over as a
	// session's statements are: same strings, a later time each time.
	b.Run("appender-pgbench", func(b *testing.B) {
		b.ReportAllocs()
		ev := pgbenchEvent()
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			ev.Time = ev.Time.Add(1013 * time.Nanosecond)
			line, err := audit.AppendEvent(buf[:0], &ev)
			if err != nil {
				b.Fatal(err)
			}
			buf = append(line, '\n')
		}
	})
	// The same with the encoder Record uses, whose memos hold the parts
	// that repeat.
	b.Run("encoder-pgbench", func(b *testing.B) {
		b.ReportAllocs()
		ev := pgbenchEvent()
		encode := audit.NewEncoder()
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			ev.Time = ev.Time.Add(1013 * time.Nanosecond)
			line, err := encode(buf[:0], &ev)
			if err != nil {
				b.Fatal(err)
			}
			buf = append(line, '\n')
		}
	})
}

// BenchmarkRecordSerial records the statement event of pgbenchLine from one
// goroutine into a writer that discards: what a session's Record costs
// (time.Now, encoding, the queue), the writer goroutine's share included.
// Its instruction count under callgrind is the figure to compare.
func BenchmarkRecordSerial(b *testing.B) {
	r := audit.NewWriterRecorder(io.Discard)
	ev := pgbenchEvent()
	ev.Time = time.Time{} // Record sets now
	b.ReportAllocs()
	for b.Loop() {
		r.Record(ev)
	}
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
}

// cpuTime is the process's user+system CPU so far. It includes the
// recorder's writer goroutine and its syscalls, which ns/op (the caller's
// wall time) does not, and unlike ns/op it does not grow while other
// processes have the CPU (the machine is shared).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU per operation from now until the
// returned function runs.
func reportCPU(b *testing.B) func() {
	cpu0 := cpuTime(b)
	return func() { b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op") }
}

// countingFile counts the writes a recorder makes.
type countingFile struct {
	f      *os.File
	writes atomic.Int64
}

func (c *countingFile) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.f.Write(p)
}

// BenchmarkRecord records events from parallel goroutines (as sessions do)
// into a file, Close included: ns/op is the time per event; cpu-ns/op is
// the whole process's CPU per event, writer and syscalls included;
// writes/op how many write calls an event costs.
func BenchmarkRecord(b *testing.B) {
	b.Run("file", func(b *testing.B) {
		r, err := audit.NewFileRecorder(filepath.Join(b.TempDir(), "audit.jsonl"), audit.FileOptions{})
		if err != nil {
			b.Fatal(err)
		}
		recordParallel(b, r, nil, 0)
	})
	b.Run("writer", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "audit.jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		cf := &countingFile{f: f}
		recordParallel(b, audit.NewWriterRecorder(cf), cf, 0)
	})
	// Paced: each goroutine records one event per 100 µs, as sessions
	// do between statements, so the writer does not always find a full
	// queue. cpu-ns/op includes the pacing's own sleeps and wake-ups.
	b.Run("paced", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "audit.jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		cf := &countingFile{f: f}
		recordParallel(b, audit.NewWriterRecorder(cf), cf, 100*time.Microsecond)
	})
}

func recordParallel(b *testing.B, r audit.Recorder, cf *countingFile, pace time.Duration) {
	b.ReportAllocs()
	b.SetParallelism(4) // 4 x GOMAXPROCS goroutines, like sessions
	report := reportCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ev := benchEvent()
		for pb.Next() {
			r.Record(ev)
			if pace > 0 {
				time.Sleep(pace)
			}
		}
	})
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	report()
	if cf != nil {
		b.ReportMetric(float64(cf.writes.Load())/float64(b.N), "writes/op")
	}
}
