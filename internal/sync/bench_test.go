package sync

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator/throttle"
)

// BenchmarkWebhookToEmail measures the time from the webhook POST reaching
// the connector to the invitation email being sent (the emulator's SendEmail
// time), one click at a time, with the emulator answering at once and with
// 50 ms added to every request. Reported: p50-ms, p99-ms.
func BenchmarkWebhookToEmail(b *testing.B) {
	for _, lat := range []time.Duration{0, 50 * time.Millisecond} {
		b.Run(fmt.Sprintf("latency=%v", lat), func(b *testing.B) {
			c := newCluster(b, clusterOpts{instances: 1, workers: 4, webhooks: true, latency: lat})
			ctx := context.Background()
			var samples []time.Duration
			n := 0
			for b.Loop() {
				email := fmt.Sprintf("bench%06d@example.com", n)
				n++
				id, err := c.em.Insert("contact", map[string]any{"firstname": "Bench", "lastname": "Mark", "emailaddress1": email})
				if err != nil {
					b.Fatal(err)
				}
				if err := c.flag(ctx, []string{id}, 1); err != nil {
					b.Fatal(err)
				}
				var sentAt time.Time
				waitFor(b, "email to "+email, 30*time.Second, func() bool {
					for _, m := range slices.Backward(c.em.Outbox()) {
						if len(m.To) > 0 && strings.EqualFold(m.To[0], email) {
							sentAt = m.SentAt
							return true
						}
					}
					return false
				})
				v, ok := c.firstPost.Load(id)
				if !ok {
					b.Fatalf("no webhook POST seen for %s", id)
				}
				samples = append(samples, sentAt.Sub(v.(time.Time)))
			}
			slices.Sort(samples)
			b.ReportMetric(ms(percentile(samples, 0.50)), "p50-ms")
			b.ReportMetric(ms(percentile(samples, 0.99)), "p99-ms")
		})
	}
}

// BenchmarkThroughputAtLimit runs one replica against the emulator's
// service-protection limits (Dataverse's defaults, 6000 requests per 300 s,
// scaled to a 3 s window: the same 20 requests/s) and reports invitations per
// second against the ceiling those limits allow given the requests one
// invitation costs.
func BenchmarkThroughputAtLimit(b *testing.B) {
	limits := throttle.Default().Scaled(0.01)
	const m = 60
	c := newCluster(b, clusterOpts{instances: 1, workers: 8, limits: limits})
	in := c.insts[0].intake
	ctx := context.Background()
	var invs, secs, reqs, throttled float64
	for b.Loop() {
		ids := make([]string, m)
		for k := range ids {
			id, err := c.em.Insert("contact", map[string]any{"firstname": "Load", "lastname": fmt.Sprint(k),
				"emailaddress1": fmt.Sprintf("load%d-%d@example.com", len(c.contacts), k),
				testCols.Status: testCols.Requested, testCols.Portal: itPortal})
			if err != nil {
				b.Fatal(err)
			}
			ids[k] = id
		}
		c.contacts = append(c.contacts, ids...)
		c.em.ResetStats()
		start := time.Now()
		for _, id := range ids {
			if _, err := in.Enqueue(ctx, Request{ContactID: id, Source: "bench"}); err != nil {
				b.Fatal(err)
			}
		}
		c.waitDrained(ids, 5*time.Minute)
		secs += time.Since(start).Seconds()
		st := c.em.Stats()
		invs += m
		reqs += float64(st.Total - st.Throttled)
		throttled += float64(st.Throttled)
	}
	rate := float64(limits.MaxRequests) / limits.Window.Seconds() // requests/s the limit admits
	perInv := reqs / invs
	ceiling := rate / perInv
	got := invs / secs
	b.ReportMetric(got, "inv/s")
	b.ReportMetric(ceiling, "ceiling-inv/s")
	b.ReportMetric(got/ceiling, "fraction")
	b.ReportMetric(perInv, "req/inv")
	b.ReportMetric(throttled/invs, "429/inv")
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
