package admin_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyholedb/keyhole/admin"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// BenchmarkStatementDecided is the metrics cost of one decided statement
// over a handful of rules as a policy has: from one goroutine, and from
// parallel sessions (which also contend on the counters' atomics).
func BenchmarkStatementDecided(b *testing.B) {
	rules := []string{"roles.bench.allow[0]", "roles.bench.allow[1]", "default-deny", "roles.analyst.deny_labels[pii.*]"}
	decide := func(m *admin.Metrics, i int) {
		eff := sqlpolicy.Allow
		if i%4 == 2 {
			eff = sqlpolicy.Deny
		}
		m.StatementDecided("postgres", eff, rules[i%len(rules)], 20*time.Microsecond)
	}
	b.Run("serial", func(b *testing.B) {
		m := admin.NewMetrics(prometheus.NewRegistry())
		b.ReportAllocs()
		defer reportCPU(b)()
		i := 0
		for b.Loop() {
			decide(m, i)
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		m := admin.NewMetrics(prometheus.NewRegistry())
		b.ReportAllocs()
		defer reportCPU(b)()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				decide(m, i)
				i++
			}
		})
	})
}

// reportCPU reports the process's user+system CPU per operation from now
// until the returned function runs: unlike ns/op it does not grow while
// other processes have the CPU (the machine is shared).
func reportCPU(b *testing.B) func() {
	cpu := func() int64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return ru.Utime.Nano() + ru.Stime.Nano()
	}
	cpu0 := cpu()
	return func() { b.ReportMetric(float64(cpu()-cpu0)/float64(b.N), "cpu-ns/op") }
}
