package pgparse

import (
	"reflect"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Decode exposes the JSON decoder alone, without the pg.Parse fallback, so
// tests can tell a decoded tree from one pg.Parse made.
var Decode = decode

// Retained decodes js with a fresh decoder, resets it as decode does before
// pooling it, and returns the names of the slabs still holding memory.
func Retained(js string) []string {
	d := new(decoder)
	d.s = js
	d.countNodes()
	if d.open() {
		d.decParseResult(new(pg.ParseResult))
	}
	d.reset(false)
	var out []string
	v := reflect.ValueOf(&d.slabs).Elem()
	for i := range v.NumField() {
		if !v.Field(i).IsZero() {
			out = append(out, v.Type().Field(i).Name)
		}
	}
	if d.lists != nil || d.listBuf != nil || d.listSpare != nil || d.text != nil || !reflect.ValueOf(d.empty).IsZero() || d.s != "" {
		out = append(out, "decoder")
	}
	return out
}

// ParseToJSON returns libpg_query's JSON of sql (fast false) or that of
// the package's own writer (fast true), and whether the writer's node
// counts are those countNodes makes of the JSON.
func ParseToJSON(sql string, fast bool) (string, bool, error) {
	js, counts, err := parseToJSON(sql, fast)
	if err != nil || counts == nil {
		return js, false, err
	}
	d := new(decoder)
	d.s = js
	d.countNodes()
	return js, d.count == *counts, nil
}
