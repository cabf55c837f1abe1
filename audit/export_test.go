package audit

import "time"

// NewWriterRecorderGrace is NewWriterRecorder with a short Close grace
// period, for tests of a sink that never recovers.
func NewWriterRecorderGrace(w interface{ Write([]byte) (int, error) }, grace time.Duration) *WriterRecorder {
	p := &pipeline{ch: make(chan []byte, DefaultBuffer), done: make(chan struct{}), stop: make(chan struct{}), sink: writerSink{w}, grace: grace}
	go p.run()
	return &WriterRecorder{p}
}
