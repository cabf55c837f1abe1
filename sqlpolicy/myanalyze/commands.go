package myanalyze

import "strings"

// The MySQL protocol has commands that name objects outside SQL text. The
// proxy decides them as the statements they are equivalent to, so the
// policy and the audit see them like any other text.

// QuoteIdent quotes a name with backticks (valid under every sql_mode).
func QuoteIdent(name string) string {
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

// InitDBText is the statement COM_INIT_DB db is equivalent to: decide it,
// send COM_INIT_DB, and on success Apply the Access (or SetDatabase).
func InitDBText(db string) string { return "USE " + QuoteIdent(db) }

// FieldListText is the statement COM_FIELD_LIST table is equivalent to
// (SHOW COLUMNS FROM table): it needs a grant on the table, and MariaDB
// answers with the columns the upstream user holds a privilege on. The
// command's wildcard only narrows the answer, so it is not part of the
// decision.
func FieldListText(table string) string { return "SHOW COLUMNS FROM " + QuoteIdent(table) }
