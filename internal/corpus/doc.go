// Package corpus holds the tests that run keyhole's Postgres policy case
// corpus (testdata/pg/cases/*.yaml) against the shop fixture schema
// (testdata/pg/shop.sql) and policy (testdata/policy/shop.yaml): through
// the engine, through the `keyhole check` binary, and against the grants of
// a real Postgres role that holds exactly what the policy allows.
//
// The package itself is that set-up, for these tests and for the
// differential test (internal/differential): the suites (policy, agent,
// case directory, the policy-equivalent grants), the case files, a
// throwaway shop database with the role (NewShop), and running statements
// as the role (PGOutcome).
package corpus
