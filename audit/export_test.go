package audit

import "time"

// NewWriterRecorderGrace is NewWriterRecorder with a short Close grace
// period, for tests of a sink that never recovers.
func NewWriterRecorderGrace(w interface{ Write([]byte) (int, error) }, grace time.Duration) *WriterRecorder {
	p := newPipeline(writerSink{w}, 0, 0)
	p.grace = grace
	return &WriterRecorder{p}
}

// AppendEvent is appendEvent, for the encoder's tests.
var AppendEvent = appendEvent

// NewEncoder returns the appendEvent of a new encoder (the one Record
// uses, with memos), for the encoder's tests.
func NewEncoder() func(b []byte, ev *Event) ([]byte, error) {
	return new(encoder).appendEvent
}

// Waiting is how many Records are blocked waiting for room in the queue.
func (p *pipeline) Waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting
}

// NewWriterRecorderBuffer is NewWriterRecorder with a queue of buffer
// events, for back-pressure tests.
func NewWriterRecorderBuffer(w interface{ Write([]byte) (int, error) }, buffer int) *WriterRecorder {
	return &WriterRecorder{newPipeline(writerSink{w}, buffer, 0)}
}
