// Package mycorpus holds the tests that run keyhole's MySQL policy case
// corpus (testdata/mysql/cases/*.yaml) against the MariaDB shop fixture
// (testdata/mysql/shop.sql) and policy (testdata/mysql/policy.yaml):
// through the engine and against a real MariaDB user holding exactly the
// grants creds.MySQLGrants derives from the policy, plus the differential
// that wraps every allowed case in derived tables, WITH column lists,
// NATURAL/USING joins, unions, correlated subqueries and INSERT ... SELECT
// and runs what keyhole allows as that user.
package mycorpus
