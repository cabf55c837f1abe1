package audit_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

func TestFormatReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		r    sqlpolicy.Reason
		want string
	}{
		{sqlpolicy.Reason{Code: sqlpolicy.ReasonLabelDenied, Table: "public.customers", Column: "ssn", Label: "pii.ssn", Rule: "roles.analyst.deny_labels[pii.*]"},
			"label_denied public.customers.ssn label=pii.ssn rule=roles.analyst.deny_labels[pii.*]"},
		{sqlpolicy.Reason{Code: sqlpolicy.ReasonNoRule, Verb: sqlpolicy.VerbDelete, Table: "public.orders", Rule: "default-deny"},
			"no_rule delete public.orders rule=default-deny"},
		{sqlpolicy.Reason{Code: sqlpolicy.ReasonFunctionDenied, Func: "pg_read_file", Detail: "reads server files"},
			"function_denied function=pg_read_file: reads server files"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, audit.FormatReason(tt.r))
		})
	}
}
