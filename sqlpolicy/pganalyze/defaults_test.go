package pganalyze_test

import (
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// TestDefaults checks what filling columns with their defaults reports:
// the sequences a nextval default advances (written, so the policy needs
// update on them, as Postgres needs a privilege) and the functions the
// default calls. Identity columns advance their sequence without a
// privilege check, so they report nothing.
func TestDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		sql       string
		sequences []string // sequences written
		funcs     []string // non-pg_catalog functions called
	}{
		{name: "omitted serial", sql: "INSERT INTO orders (total) VALUES (1)", sequences: []string{"public.orders_id_seq"}},
		{name: "serial supplied", sql: "INSERT INTO orders (id, total) VALUES (1, 1)"},
		{name: "DEFAULT keyword", sql: "INSERT INTO orders (id, total) VALUES (DEFAULT, 1)", sequences: []string{"public.orders_id_seq"}},
		{name: "DEFAULT in a later row", sql: "INSERT INTO orders (id, total) VALUES (1, 1), (DEFAULT, 2)", sequences: []string{"public.orders_id_seq"}},
		{name: "DEFAULT VALUES", sql: "INSERT INTO orders DEFAULT VALUES", sequences: []string{"public.orders_id_seq"}},
		{name: "no column list, every value", sql: "INSERT INTO orders VALUES (1, 1, 1, 'x', now())"},
		{name: "no column list, leading values", sql: "INSERT INTO products VALUES (1)"},
		{name: "insert select without id", sql: "INSERT INTO orders (total) SELECT price FROM products", sequences: []string{"public.orders_id_seq"}},
		{name: "identity and explicit sequence default", sql: "INSERT INTO stamped (note) VALUES ('n')", sequences: []string{"public.order_seq"}},
		{name: "user function default", sql: "INSERT INTO stamped (ticket, at) VALUES (1, now())", funcs: []string{"public.mask"}},
		{name: "update SET DEFAULT", sql: "UPDATE orders SET id = DEFAULT", sequences: []string{"public.orders_id_seq"}},
		{name: "update without DEFAULT", sql: "UPDATE orders SET total = 1"},
		{name: "upsert SET DEFAULT", sql: "INSERT INTO orders (id, total) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET id = DEFAULT",
			sequences: []string{"public.orders_id_seq"}},
		{name: "merge insert omitting id", sql: "MERGE INTO orders o USING products p ON o.id = p.id WHEN NOT MATCHED THEN INSERT (total) VALUES (p.price)",
			sequences: []string{"public.orders_id_seq"}},
		{name: "merge insert with id", sql: "MERGE INTO orders o USING products p ON o.id = p.id WHEN NOT MATCHED THEN INSERT (id, total) VALUES (p.id, p.price)"},
		{name: "copy from with a column list", sql: "COPY orders (total) FROM STDIN", sequences: []string{"public.orders_id_seq"}},
		{name: "copy from every column", sql: "COPY orders FROM STDIN"},
		{name: "view omitting the base serial", sql: "INSERT INTO customer_safe (name) VALUES ('x')", sequences: []string{"public.customers_id_seq"}},
		{name: "update SET DEFAULT through a view", sql: "UPDATE customer_safe SET id = DEFAULT", sequences: []string{"public.customers_id_seq"}},
		{name: "view supplying the base serial", sql: "INSERT INTO customer_safe (id, name, created_at) VALUES (1, 'x', now())"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := one(t, tc.sql)
			assert.Empty(t, st.Problems)
			var seqs, funcs []string
			for _, tb := range st.Tables {
				if tb.Mode == sqlpolicy.Write && strings.HasSuffix(tb.Rel.Name, "_seq") {
					seqs = append(seqs, tb.Rel.String())
				}
			}
			for _, f := range st.Functions {
				if f.Schema != "pg_catalog" && !slices.Contains(funcs, f.String()) {
					funcs = append(funcs, f.String())
				}
			}
			sort.Strings(seqs)
			assert.Equal(t, tc.sequences, seqs, "sequences written")
			assert.Equal(t, tc.funcs, funcs, "functions")
			assert.False(t, st.LiteralSensitive, "a default's literals are the catalog's, not the statement's")
		})
	}
}
