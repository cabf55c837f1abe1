//go:build !race

package mysqlproxy_test

const raceEnabled = false
