// Package mycorpus holds the tests that run keyhole's MySQL policy case
// corpus (testdata/mysql/cases/*.yaml) against the MariaDB shop fixture
// (testdata/mysql/shop.sql) and policy (testdata/mysql/policy.yaml):
// through the engine and against a real MariaDB user holding exactly the
// grants creds.MySQLGrants derives from the policy, plus the differential
// that wraps every allowed case in derived tables, WITH column lists,
// NATURAL/USING joins, unions, correlated subqueries and INSERT ... SELECT
// and runs what keyhole allows as that user. constraints_test.go does the
// same for what the server evaluates beyond a statement's text (foreign
// key checks, CHECK constraints, generated columns, unique keys, column
// defaults, partitioning) over a schema and policy of its own: each probe
// is shown to reveal labelled data to the role's MariaDB grants, and
// keyhole must refuse it.
package mycorpus
