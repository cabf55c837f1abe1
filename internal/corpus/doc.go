// Package corpus holds the tests that run keyhole's Postgres policy case
// corpus (testdata/pg/cases/*.yaml) against the shop fixture schema
// (testdata/pg/shop.sql) and policy (testdata/policy/shop.yaml): through
// the engine, through the `keyhole check` binary, and against the grants of
// a real Postgres role that holds exactly what the policy allows.
package corpus
