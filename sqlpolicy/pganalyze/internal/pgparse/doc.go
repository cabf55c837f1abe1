// Package pgparse parses Postgres SQL into pg_query_go's parse tree
// (*pg_query.ParseResult, the protobuf structs the analyzer walks) several
// times faster than pg_query.Parse, and returns exactly what it returns.
//
// pg_query.Parse asks libpg_query for protobuf, which its C side builds
// through protobuf-c (most of the cost of a parse), and then unmarshals it
// by reflection, one allocation per message. Parse has libpg_query's raw
// parse tree written as its JSON output instead, by libpg_query's own
// per-node code with faster output macros (jsonout_gen.c, the same bytes,
// see gen/jsonout.sh), and decodes it with code generated from the same
// protobuf descriptors (see gen/): one function per message type, no
// reflection, nodes carved from per-parse slabs. libpg_query writes that
// JSON by the protobuf JSON mapping with its field names, enum names, and
// zero values left out, so every tree decodes to the struct values the
// protobuf path makes; the equivalence is tested on the whole analyzer
// corpus and fuzzed against pg_query.Parse.
//
// ParseScratch is Parse for a tree that is dropped after use (the
// analyzer's tree of the statement it decides): Release zeroes its nodes
// and lists and the next ParseScratch hands them out again, so a novel
// statement allocates little more than its strings. Parse's trees (view
// definitions, column defaults, which are cached) never share memory.
package pgparse
