// Package audit records one structured event per connection phase and per
// decided statement, and reads them back for review.
//
// Sinks (FileRecorder: JSON lines with size rotation; WriterRecorder: any
// io.Writer such as stdout) never drop an event: Record blocks while the
// buffer is full, a failed write is retried until it succeeds, and Close
// flushes and fsyncs. An event recorded after Close cannot be written; it
// is counted (Lost) and logged, never silently discarded.
package audit
