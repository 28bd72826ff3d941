package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// queue is the SDK's batch span processor with a gate in front that keeps
// count. The batch processor already drops spans when its queue is full, but
// keeps the count to itself and sends export failures to the process-wide
// OpenTelemetry error handler (one log line per failed batch on stderr). The
// gate bounds the spans held (queued, batched or being exported) to the
// configured queue size, so the processor's own queue never overflows, and
// every span that is not delivered is counted here: refused at the gate, or
// in a batch the exporter failed to send.
//
// A request only pays for the gate (an atomic add) and the batch
// processor's non-blocking enqueue; exporting, and the warning, happen on
// the processor's goroutine.
type queue struct {
	next     sdktrace.SpanProcessor
	max      int64
	inflight atomic.Int64
	warner   *dropWarner
}

// flushRoom is how many ForceFlush calls at once the queue has room for.
const flushRoom = 8

func newQueue(exp sdktrace.SpanExporter, b batchSettings, w *dropWarner) *queue {
	q := &queue{max: int64(b.queue), warner: w}
	q.next = sdktrace.NewBatchSpanProcessor(&countingExporter{next: exp, q: q},
		// Room beyond what the gate lets through for ForceFlush's markers,
		// so the processor never drops a span uncounted.
		sdktrace.WithMaxQueueSize(b.queue+flushRoom),
		sdktrace.WithMaxExportBatchSize(b.size),
		sdktrace.WithBatchTimeout(b.delay),
		sdktrace.WithExportTimeout(b.exportTimeout),
	)
	return q
}

// OnStart does nothing: the batch processor only acts on ended spans.
func (q *queue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (q *queue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	if q.inflight.Add(1) > q.max {
		q.inflight.Add(-1)
		q.warner.drop(1)
		return
	}
	q.next.OnEnd(s)
}

func (q *queue) ForceFlush(ctx context.Context) error { return q.next.ForceFlush(ctx) }

func (q *queue) Shutdown(ctx context.Context) error { return q.next.Shutdown(ctx) }

// held is the count of spans queued, batched or being exported.
func (q *queue) held() int64 { return q.inflight.Load() }

// countingExporter releases the gate as batches leave, and turns a failed
// export into a count for the warning instead of an error for the global
// handler. A receiver's partial success (some spans rejected) comes back as
// an error too, and counts the whole batch.
type countingExporter struct {
	next sdktrace.SpanExporter
	q    *queue
}

func (c *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := c.next.ExportSpans(ctx, spans)
	c.q.inflight.Add(-int64(len(spans)))
	if err != nil {
		c.q.warner.fail(len(spans), err)
	}
	c.q.warner.maybeWarn()
	return nil
}

func (c *countingExporter) Shutdown(ctx context.Context) error { return c.next.Shutdown(ctx) }

// dropWarner counts spans that were not delivered and says so through slog
// at most once per WarnEvery, with the counts since the last warning.
// maybeWarn runs on the batch processor's goroutine and final at shutdown;
// drop, the only call on a request's path, is one atomic add.
type dropWarner struct {
	log      *slog.Logger
	endpoint string
	now      func() time.Time

	refused atomic.Int64 // at the gate since the last warning: queue full
	failed  atomic.Int64 // since the last warning, in batches the exporter could not send
	total   atomic.Int64 // since the start

	mu      sync.Mutex
	last    time.Time // of the last warning; zero: none yet
	lastErr error     // of the latest failed export since then
}

func newDropWarner(log *slog.Logger, endpoint string, now func() time.Time) *dropWarner {
	return &dropWarner{log: log, endpoint: endpoint, now: now}
}

func (w *dropWarner) drop(n int) {
	w.refused.Add(int64(n))
	w.total.Add(int64(n))
}

func (w *dropWarner) fail(n int, err error) {
	w.failed.Add(int64(n))
	w.total.Add(int64(n))
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()
}

func (w *dropWarner) pending() int64 { return w.refused.Load() + w.failed.Load() }

func (w *dropWarner) maybeWarn() {
	if w.pending() == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if !w.last.IsZero() && now.Sub(w.last) < WarnEvery {
		return
	}
	w.warnLocked(now, 0)
}

// final reports what is left at shutdown, however soon after the last
// warning: it is the last chance to. held is the spans still queued or
// being exported, which stopping the process loses.
func (w *dropWarner) final(held int64) {
	if w.pending()+held <= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnLocked(w.now(), held)
}

func (w *dropWarner) warnLocked(now time.Time, held int64) {
	refused, failed := w.refused.Swap(0), w.failed.Swap(0)
	attrs := []any{
		"dropped", refused + failed + held,
		"queue_full", refused,
		"export_failed", failed,
	}
	if held > 0 {
		attrs = append(attrs, "unsent_at_shutdown", held)
	}
	attrs = append(attrs, "endpoint", w.endpoint)
	if w.lastErr != nil {
		attrs = append(attrs, "error", w.lastErr.Error())
	}
	if !w.last.IsZero() {
		attrs = append(attrs, "since_last_warning", now.Sub(w.last).Round(time.Second).String())
	}
	w.log.Warn("telemetry: trace spans dropped", attrs...)
	w.last = now
	w.lastErr = nil
}
