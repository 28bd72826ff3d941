package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	intake "github.com/d365portal/connector/internal/sync"
)

// IntakeHooks returns callbacks for internal/sync that count webhook
// deliveries by outcome, enqueues by source, processed requests by outcome
// with their end-to-end latency, and poll cycles. Call it once per Metrics.
func (m *Metrics) IntakeHooks() intake.Hooks {
	webhooks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "webhook_deliveries_total",
		Help: "Dataverse webhook deliveries by outcome (accepted, duplicate, ignored, unauthorized, bad_request, too_large, unavailable).",
	}, []string{"outcome"})
	enqueued := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "queue_enqueued_total",
		Help: "Invitation requests offered to the queue by source; duplicate=true when dedupe dropped it.",
	}, []string{"source", "duplicate"})
	processed := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "queue_processed_seconds",
		Help:    "Time from first enqueue to a worker finishing the request, by outcome (sent, skipped, retry, failed).",
		Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900},
	}, []string{"outcome"})
	polls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "poll_cycles_total",
		Help: "Poll cycles this replica ran, by result (ok, error).",
	}, []string{"result"})
	polled := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "poll_enqueued_total",
		Help: "Requests the poller found and enqueued.",
	})
	m.reg.MustRegister(webhooks, enqueued, processed, polls, polled)
	return intake.Hooks{
		Webhook: func(outcome string) { webhooks.WithLabelValues(outcome).Inc() },
		Enqueue: func(source string, ok bool) {
			dup := "false"
			if !ok {
				dup = "true"
			}
			enqueued.WithLabelValues(source, dup).Inc()
		},
		Processed: func(outcome string, since time.Duration) {
			processed.WithLabelValues(outcome).Observe(since.Seconds())
		},
		Poll: func(n int, _ time.Duration, err error) {
			if err != nil {
				polls.WithLabelValues("error").Inc()
				return
			}
			polls.WithLabelValues("ok").Inc()
			polled.Add(float64(n))
		},
	}
}
