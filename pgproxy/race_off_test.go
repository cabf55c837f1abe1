//go:build !race

package pgproxy_test

const raceEnabled = false
