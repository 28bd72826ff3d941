package telemetry

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// The webhook's span and the worker's span are one trace: the entry's
// fields carry the context across the queue, and the worker's span is the
// webhook span's child.
func TestCarrierRoundTripParentChild(t *testing.T) {
	tp, mem, flush := memTracing(t, Config{Enabled: true})
	tracer := tp.Tracer("test")
	p := Propagator()

	ctx, hook := tracer.Start(context.Background(), "POST /hooks/dataverse", trace.WithSpanKind(trace.SpanKindServer))
	fields := map[string]string{"contact": "6f1c3e1a-28a4-4f0e-9a55-2d3c1e0f7b10", "version": "3"}
	Inject(ctx, p, fields)
	hook.End()
	if fields["traceparent"] == "" {
		t.Fatalf("fields after Inject = %v, want a traceparent", fields)
	}
	if fields["contact"] != "6f1c3e1a-28a4-4f0e-9a55-2d3c1e0f7b10" || fields["version"] != "3" {
		t.Fatalf("Inject changed the entry's own fields: %v", fields)
	}

	// The worker runs elsewhere: a fresh context, the fields as read back.
	got := map[string]string{}
	for k, v := range fields {
		got[k] = v
	}
	wctx := Extract(context.Background(), p, got)
	remote := trace.SpanContextFromContext(wctx)
	if !remote.IsRemote() || remote.SpanID() != hook.SpanContext().SpanID() {
		t.Fatalf("extracted %v, want the webhook span %v as a remote parent", remote, hook.SpanContext())
	}
	_, work := tracer.Start(wctx, "invite.process", trace.WithSpanKind(trace.SpanKindConsumer))
	work.End()
	flush()

	spans := mem.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("exported %d spans, want 2", len(spans))
	}
	byName := map[string]int{}
	for i, s := range spans {
		byName[s.Name] = i
	}
	parent, child := spans[byName["POST /hooks/dataverse"]], spans[byName["invite.process"]]
	if child.SpanContext.TraceID() != parent.SpanContext.TraceID() {
		t.Errorf("child trace %s, parent trace %s: want one trace", child.SpanContext.TraceID(), parent.SpanContext.TraceID())
	}
	if child.Parent.SpanID() != parent.SpanContext.SpanID() {
		t.Errorf("child's parent %s, want %s", child.Parent.SpanID(), parent.SpanContext.SpanID())
	}
	if child.SpanKind != trace.SpanKindConsumer {
		t.Errorf("child kind %v, want consumer", child.SpanKind)
	}
}

// An entry with a malformed or missing traceparent (an old entry, or one
// written with tracing off) gives the worker a trace of its own.
func TestExtractWithoutValidContext(t *testing.T) {
	p := Propagator()
	for name, fields := range map[string]map[string]string{
		"none":      {"contact": "x"},
		"malformed": {"traceparent": "00-zz-1-01"},
		"nil":       nil,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := Extract(context.Background(), p, fields)
			if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
				t.Fatalf("extracted %v from %v, want no span context", sc, fields)
			}
		})
	}
}

// Dataverse's correlation id becomes an attribute only in the form
// Dataverse sends it; table and message names only as identifiers.
func TestWebhookAttributes(t *testing.T) {
	h := http.Header{}
	h.Set(CorrelationHeader, "{9A3F0C2E-5B7D-4E1A-8C6B-0D2E4F6A8B1C}")
	h.Set("x-ms-dynamics-entity-name", "contact")
	h.Set("x-ms-dynamics-request-name", "Update")
	got := attrMap(WebhookAttributes(h))
	if got[KeyCorrelationID].AsString() != "9a3f0c2e-5b7d-4e1a-8c6b-0d2e4f6a8b1c" {
		t.Errorf("correlation id %q", got[KeyCorrelationID].AsString())
	}
	if got[KeyEntity].AsString() != "contact" || got[KeyMessage].AsString() != "Update" {
		t.Errorf("entity/message = %q/%q", got[KeyEntity].AsString(), got[KeyMessage].AsString())
	}

	bad := http.Header{}
	bad.Set(CorrelationHeader, "code=ABCD1234; a@b.example")
	bad.Set("x-ms-dynamics-entity-name", "contact; drop")
	bad.Set("x-ms-dynamics-request-name", "")
	if got := WebhookAttributes(bad); len(got) != 0 {
		t.Errorf("attributes from forged headers: %v, want none", got)
	}
}
