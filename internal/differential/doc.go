// Package differential checks keyhole's Postgres analyzer against Postgres
// itself: statements from generators are decided by the engine, and every
// statement it allows runs, in a rolled-back transaction, as a Postgres
// role that holds exactly the policy's grants (internal/corpus). Postgres
// refusing one of them for lack of a privilege (SQLSTATE 42501) means the
// analyzer bound a name to something other than what Postgres reads.
//
// The statements come from three sources: Generator, random statements
// built to exercise Postgres's name scoping (FROM items seen or not seen
// from subqueries, LATERAL, JOIN ON, aliased joins, column alias lists,
// USING and NATURAL, functions in FROM, CTEs, set operations, names that
// exist at several query levels); mutations of the corpus cases
// (Rescope, Wrap, and CaseFlipped, which quotes every qualifier in upper
// case so that it passes over its own item to an outer one); and sqlsmith, when the test asks for it.
//
// TestDifferential runs a short pass in `make test` and a long one in
// `make fuzz` (KEYHOLE_DIFF_STATEMENTS, KEYHOLE_DIFF_SQLSMITH,
// KEYHOLE_DIFF_SEED).
package differential
