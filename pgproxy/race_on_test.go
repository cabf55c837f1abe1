//go:build race

package pgproxy_test

// raceEnabled: the race detector's instrumentation enlarges frames, so an
// idle session's stack is not the 4 KiB of a normal build.
const raceEnabled = true
