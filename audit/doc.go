// Package audit records one structured event per connection phase and per
// decided statement, and reads them back for review.
//
// Sinks (FileRecorder: JSON lines with size rotation; WriterRecorder: any
// io.Writer such as stdout) never drop an event. The promise:
//
//   - Record encodes the event and queues it; while Buffer events are
//     queued it blocks (back-pressure: a stalled sink stalls the proxies,
//     it never loses or skips an event).
//   - Queued events are written in batches, one write per batch: an event
//     reaches the sink (the OS, for a file) at most FlushInterval (5 ms by
//     default) after Record returns, sooner once 64 KiB are queued — as
//     long as the sink accepts writes. A failed write is retried until it
//     succeeds, and the queue meanwhile fills.
//   - Rotation writes every line meant for the old file before renaming
//     it, and never splits a line.
//   - Close (keyhole's shutdown) writes everything queued, including the
//     events of Records already waiting for room, and fsyncs.
//   - So a killed process loses at most the events of its last
//     FlushInterval; a machine crash can also lose what the OS had not yet
//     put on disk (there is no fsync per batch).
//   - An event recorded after Close cannot be written; it is counted
//     (Lost) and logged, never silently discarded.
//
// Events are encoded by a hand-written appender that writes exactly what
// encoding/json would (the reader and `keyhole audit` decode it with
// encoding/json); its tests compare the two on every field. Record's
// encoder (one per P) also remembers the encoded parts that repeat from
// event to event — a session's fields, a statement, a verdict, the
// current second — and reuses them only for equal strings; its test feeds
// it streams of events that differ from the last by one field or byte.
package audit
