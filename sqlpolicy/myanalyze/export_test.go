package myanalyze

import "slices"

// BuiltinNames lists the function names the analyzer lets through as
// MariaDB natives, for the test that checks them against the server. (The
// dangerous ones are refused whatever they are.)
func BuiltinNames() []string {
	out := make([]string, 0, len(builtinFuncs))
	for n := range builtinFuncs {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// QuotedKeywordFunc reports whether the analyzer takes `name`(...) for a
// call of the current database's stored function of that name.
func QuotedKeywordFunc(name string) bool { return quotedKeywordFuncs[name] }

// SpacedKeywordFunc reports whether the analyzer takes name (...), with a
// space before "(", for a call of the stored function of that name.
func SpacedKeywordFunc(name string) bool { return spacedKeywordFuncs[name] }
