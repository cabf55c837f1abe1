//go:build race

package mysqlproxy_test

// raceEnabled: the race detector keeps shadow memory for every allocation,
// which the memory tests' bounds allow for.
const raceEnabled = true
