package audit

import (
	"testing"
	"time"
)

// stampWriter reports when each write came.
type stampWriter chan time.Time

func (w stampWriter) Write(p []byte) (int, error) {
	w <- time.Now()
	return len(p), nil
}

func waitWrite(t *testing.T, w stampWriter) time.Time {
	t.Helper()
	select {
	case at := <-w:
		return at
	case <-time.After(5 * time.Second):
		t.Fatal("no write")
		return time.Time{}
	}
}

// While events keep coming the writer sleeps one interval after each batch
// and writes what came meanwhile: an event queued during that sleep goes
// out when it ends, not a whole interval after the event (which would take
// a second wake-up per batch). Once a sleep finds nothing the writer is
// idle, and the next event is gathered for a whole interval again.
func TestWriterSleepsThroughAFlow(t *testing.T) {
	const interval = 600 * time.Millisecond
	w := make(stampWriter, 8)
	p := newPipeline(writerSink{w}, 0, interval)
	defer p.Close()
	ev := Event{Kind: KindStatement, Session: "s", Agent: "a", Statement: "SELECT 1"}

	p.record(&ev)
	first := waitWrite(t, w)

	// Margins of 200 ms and more: a loaded machine's timers run late.
	// A sleep, not a wait on an event: the case under test is an event
	// that comes while the writer sleeps on its timer, which is time
	// passing with nothing to announce it.
	time.Sleep(interval / 2)
	queued := time.Now()
	p.record(&ev)
	second := waitWrite(t, w)
	if d := second.Sub(queued); d > interval*5/6 {
		t.Errorf("an event queued during the writer's sleep was written %v after it came; want by the sleep's end (%v after the last write, %v after the event)",
			d, interval, first.Add(interval).Sub(queued))
	}

	// The sleep after the second batch finds nothing: idle. (A sleep
	// again: "the writer has gone idle" is an absence no event reports.)
	time.Sleep(3 * interval)
	queued = time.Now()
	p.record(&ev)
	third := waitWrite(t, w)
	if d := third.Sub(queued); d < interval-20*time.Millisecond {
		t.Errorf("after an idle spell an event was written %v after it came; want it gathered for the interval (%v)", d, interval)
	}
}
