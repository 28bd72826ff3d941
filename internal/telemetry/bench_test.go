package telemetry

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

var (
	benchContacts = []string{
		"6f1c3e1a-28a4-4f0e-9a55-2d3c1e0f7b10",
		"0b7e2d94-5c1f-4a8e-b3d6-9e2f4a6c8d01",
		"c4a9e7f2-1b3d-4e5f-8a7c-6d9e0f1a2b3c",
	}
	benchSink map[string]string
)

// bareStep is a stand-in for a pipeline step's own work on its hot path:
// building a stream entry's fields.
func bareStep(i int) map[string]string {
	return map[string]string{"contact": benchContacts[i%len(benchContacts)], "version": strconv.Itoa(i)}
}

// producer is the start option of a producer span, built once: a literal
// option at the call site is a slice the compiler puts on the heap.
var producer = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}

// tracedStep is the same step instrumented as the pipeline should be: a
// span, its attributes only when it records, the trace context injected
// into the fields.
func tracedStep(ctx context.Context, tr trace.Tracer, p propagation.TextMapPropagator, i int) map[string]string {
	ctx, span := tr.Start(ctx, "invite.enqueue", producer...)
	f := bareStep(i)
	if span.IsRecording() {
		span.SetAttributes(KeyContactID.String(f["contact"]))
	}
	Inject(ctx, p, f)
	span.End()
	return f
}

// naiveStep is the step instrumented the obvious way: a literal option
// and attributes set whether or not the span records.
func naiveStep(ctx context.Context, tr trace.Tracer, p propagation.TextMapPropagator, i int) map[string]string {
	ctx, span := tr.Start(ctx, "invite.enqueue", trace.WithSpanKind(trace.SpanKindProducer))
	f := bareStep(i)
	span.SetAttributes(KeyContactID.String(f["contact"]))
	Inject(ctx, p, f)
	span.End()
	return f
}

// BenchmarkOffOverhead compares a step with no instrumentation at all and
// the same step instrumented, with tracing off as New sets it up by
// default, alternating blocks of each in the same run. It reports
// bare-ns/op, off-ns/op (instrumented as tracedStep) and naive-ns/op (as
// naiveStep), their ratios to bare and the allocations each adds, and a
// lone span start and end with tracing off (span-ns/op).
func BenchmarkOffOverhead(b *testing.B) {
	tp, _, err := New(context.Background(), Config{})
	if err != nil {
		b.Fatal(err)
	}
	tr, p, ctx := tp.Tracer(ScopeName), Propagator(), context.Background()
	bareAllocs := testing.AllocsPerRun(1000, func() { benchSink = bareStep(1) })
	offAllocs := testing.AllocsPerRun(1000, func() { benchSink = tracedStep(ctx, tr, p, 1) })
	naiveAllocs := testing.AllocsPerRun(1000, func() { benchSink = naiveStep(ctx, tr, p, 1) })

	const block = 512
	var bare, off, naive, span time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; done += block {
		n := min(block, b.N-done)
		t0 := time.Now()
		for i := range n {
			benchSink = bareStep(i)
		}
		t1 := time.Now()
		for i := range n {
			benchSink = tracedStep(ctx, tr, p, i)
		}
		t2 := time.Now()
		for i := range n {
			benchSink = naiveStep(ctx, tr, p, i)
		}
		t3 := time.Now()
		for range n {
			_, s := tr.Start(ctx, "invite.enqueue")
			s.End()
		}
		t4 := time.Now()
		bare += t1.Sub(t0)
		off += t2.Sub(t1)
		naive += t3.Sub(t2)
		span += t4.Sub(t3)
	}
	b.StopTimer()
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
	b.ReportMetric(per(bare), "bare-ns/op")
	b.ReportMetric(per(off), "off-ns/op")
	b.ReportMetric(per(off)/per(bare), "off/bare")
	b.ReportMetric(offAllocs-bareAllocs, "off-added-allocs/op")
	b.ReportMetric(per(naive), "naive-ns/op")
	b.ReportMetric(per(naive)/per(bare), "naive/bare")
	b.ReportMetric(naiveAllocs-bareAllocs, "naive-added-allocs/op")
	b.ReportMetric(per(span), "span-ns/op")
	b.ReportMetric(0, "ns/op") // an iteration runs all four; the figures above are the result
}

// BenchmarkSpanEndpoint measures what a request pays to start and end a
// span (with three attributes) when tracing is off, when spans go to a
// live OTLP/HTTP receiver in this process, to an endpoint that refuses
// connections, and to one that takes the request and never answers. The
// four alternate in blocks of 16 spans in the same run (a clock read per
// span would cost more than the span on this kind of machine). It reports
// the mean per span and the 99th percentile of the blocks' per-span time
// for each, the ratios, and the share of spans each delivered or dropped.
func BenchmarkSpanEndpoint(b *testing.B) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	live := startReceiver(b, false)
	hung := startReceiver(b, true)
	type mode struct {
		name   string
		tracer trace.Tracer
		t      *tracing
		blocks []time.Duration
	}
	newMode := func(name string, cfg Config) *mode {
		cfg.Logger = quiet
		t, err := newTracing(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			live.release()
			hung.release()
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_ = t.shutdown(sctx)
		})
		return &mode{name: name, tracer: t.provider.Tracer(ScopeName), t: t}
	}
	modes := []*mode{
		newMode("off", Config{}),
		newMode("live", Config{Enabled: true, Endpoint: live.srv.URL}),
		newMode("refused", Config{Enabled: true, Endpoint: "http://" + closedAddr(b)}),
		newMode("hung", Config{Enabled: true, Endpoint: hung.srv.URL}),
	}
	const block = 16
	b.ResetTimer()
	for done := 0; done < b.N; done += block {
		n := min(block, b.N-done)
		for _, m := range modes {
			t0 := time.Now()
			for i := range n {
				_, s := m.tracer.Start(ctx, "GET /api/data/v9.2/contacts({id})", client...)
				if s.IsRecording() {
					s.SetAttributes(
						semconv.HTTPRequestMethodKey.String("GET"),
						semconv.HTTPResponseStatusCode(200),
						KeyContactID.String(benchContacts[(done+i)%len(benchContacts)]),
					)
				}
				s.End()
			}
			m.blocks = append(m.blocks, time.Since(t0)/time.Duration(n))
		}
	}
	b.StopTimer()
	mean := map[string]float64{}
	for _, m := range modes {
		var sum time.Duration
		for _, d := range m.blocks {
			sum += d
		}
		slices.Sort(m.blocks)
		mean[m.name] = float64(sum.Nanoseconds()) / float64(len(m.blocks))
		b.ReportMetric(mean[m.name], m.name+"-ns/span")
		b.ReportMetric(float64(m.blocks[len(m.blocks)*99/100].Nanoseconds()), m.name+"-p99-ns/span")
	}
	b.ReportMetric(mean["live"]/mean["off"], "live/off")
	b.ReportMetric(mean["refused"]/mean["live"], "refused/live")
	b.ReportMetric(mean["hung"]/mean["live"], "hung/live")
	// Flush what the live and refused providers hold, so the shares below
	// count every span: delivered to the receiver, or dropped.
	for _, m := range modes[1:3] {
		forceFlush(b, m.t.provider)
	}
	b.ReportMetric(100*float64(len(live.spans()))/float64(b.N), "live-delivered-%")
	b.ReportMetric(100*float64(modes[2].t.queue.warner.total.Load())/float64(b.N), "refused-dropped-%")
	b.ReportMetric(100*float64(modes[3].t.queue.warner.total.Load())/float64(b.N), "hung-dropped-%")
	b.ReportMetric(0, "ns/op")
}

var client = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
