package redisconn

import (
	"context"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/redistest"
)

// BenchmarkSentinelFailover measures, per SIGKILL of the primary, how long
// the client goes without a primary it can write to (sentinel
// down-after-milliseconds 1000, failover-timeout 4000, quorum 2 of 3). Run
// with -benchtime=Nx: each iteration starts a fresh group.
func BenchmarkSentinelFailover(b *testing.B) {
	var total time.Duration
	var failed int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		g := redistest.StartSentinels(b, redistest.SentinelOptions{})
		c, err := New(sentinelOptions(g, "", ""))
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if err := c.Set(ctx, "warm", 1, 0).Err(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		killed := g.KillPrimary(b)
		d, n, err := writeUntilRecovered(ctx, c, failoverBound)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		g.WaitForNewPrimary(b, killed.Addr, failoverBound)
		total += d
		failed += n
		_ = c.Close()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s-without-primary/op")
	b.ReportMetric(float64(failed)/float64(b.N), "failed-writes/op")
}
