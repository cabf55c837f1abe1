// Package catalog is keyhole's picture of an upstream database schema:
// relations and their columns in attribute order (to expand `*` and resolve
// names along the login's search path), view definitions, functions, and the
// PII labels DBAs put on relations and columns through comments
// ("keyhole: pii.email").
//
// A Catalog is built by introspection (LoadPostgres, InspectPostgres) or read
// from a JSON dump (ReadFile, Load), and is read-only afterwards. The label
// grammar (ValidLabel, ValidLabelPattern, MatchLabel, ParseCommentLabels) is
// defined here so that the policy file and the comments share one.
package catalog
