// Package catalog is keyhole's picture of an upstream database schema:
// relations and their columns in attribute order (to expand `*` and resolve
// names along the login's search path), view definitions, functions, and the
// PII labels DBAs put on relations and columns through comments
// ("keyhole: pii.email").
//
// A Catalog is built by introspection (LoadPostgres; InspectPostgres also
// returns warnings such as a malformed label in a comment) or read from a
// JSON dump (ReadFile, Load), and is read-only afterwards. View definitions
// are printed with an empty search_path, so every relation in them is
// schema-qualified and only pg_catalog names are left bare: resolve them
// with the path []string{} (pg_catalog only), not the session's.
//
// A Postgres catalog also records the login it was read as and whether
// that login has USAGE on each schema (Login, SchemaUsage): Postgres skips
// search_path entries the current user cannot use. They describe sessions
// only when those log in as the same login, which the loader says with
// SessionsShareLogin (never saved; SchemaSearched combines the three).
//
// The label grammar (ValidLabel, ValidLabelPattern, MatchLabel,
// ParseCommentLabels) is defined here so that the policy file and the
// comments share one. A comment whose labels do not parse gives its object
// InvalidLabel, which policies deny, so a typo fails closed.
package catalog
