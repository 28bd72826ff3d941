package metrics

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// QueueStats is a snapshot of the intake queue.
type QueueStats struct {
	Depth       int64         // messages in the stream not yet delivered to a worker
	Pending     int64         // delivered to a worker and not yet acknowledged
	OldestAge   time.Duration // age of the oldest message waiting or pending; 0 when empty
	DeadLetters int64         // messages moved to the dead-letter stream
}

// QueueStatsFunc reads the queue; it is called once per scrape.
type QueueStatsFunc func(context.Context) (QueueStats, error)

// queueTimeout bounds one stats read so a slow Redis cannot hang a scrape.
const queueTimeout = 5 * time.Second

// RegisterQueue adds gauges read from stats at scrape time: queue depth,
// pending messages, oldest message age and dead letters, plus
// connector_queue_up (0 when the last read failed, in which case the other
// queue gauges are left out rather than reported as zero). It fails when a
// queue is already registered.
func (m *Metrics) RegisterQueue(stats QueueStatsFunc) error {
	if stats == nil {
		return errors.New("metrics: register queue: nil stats func")
	}
	if err := m.reg.Register(newQueueCollector(stats)); err != nil {
		return fmt.Errorf("metrics: register queue: %w", err)
	}
	return nil
}

type queueCollector struct {
	stats                                QueueStatsFunc
	up, depth, pending, oldest, deadLtrs *prometheus.Desc
}

func newQueueCollector(stats QueueStatsFunc) *queueCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "queue", name), help, nil, nil)
	}
	return &queueCollector{
		stats:    stats,
		up:       d("up", "1 when the queue statistics could be read at this scrape, else 0."),
		depth:    d("depth", "Invitation requests in the queue not yet delivered to a worker."),
		pending:  d("pending", "Invitation requests delivered to a worker and not yet acknowledged."),
		oldest:   d("oldest_age_seconds", "Age of the oldest invitation request waiting or pending."),
		deadLtrs: d("dead_letters", "Invitation requests moved to the dead-letter stream."),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.depth, c.pending, c.oldest, c.deadLtrs} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), queueTimeout)
	defer cancel()
	s, err := c.stats(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(s.Depth))
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(s.Pending))
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, s.OldestAge.Seconds())
	ch <- prometheus.MustNewConstMetric(c.deadLtrs, prometheus.GaugeValue, float64(s.DeadLetters))
}
