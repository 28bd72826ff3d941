package telemetrytest

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/telemetry"
)

// The receiver decodes what the connector's OTLP/HTTP exporter sends:
// parent and child in one trace, attributes after the sanitizer.
func TestReceiverDecodesExport(t *testing.T) {
	r, err := StartReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tp, shutdown, err := telemetry.New(context.Background(), telemetry.Config{Enabled: true, Endpoint: r.URL(), ServiceName: "connector-test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, parent := tp.Tracer("t").Start(context.Background(), "POST /hooks/dataverse", trace.WithSpanKind(trace.SpanKindServer))
	_, child := tp.Tracer("t").Start(ctx, "GET /api/data/v9.2/contacts(5d9e2b71-0c4a-4f3e-b8a6-7e1d3c9f2a48)", trace.WithSpanKind(trace.SpanKindClient))
	child.SetAttributes(telemetry.KeyPortal.String("Partners"), telemetry.KeyOutcome.String("code=SECRET123"))
	child.End()
	parent.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := r.Spans()
	if len(spans) != 2 || r.Requests() == 0 || r.Count() != 2 {
		t.Fatalf("received %d spans in %d requests, want 2", len(spans), r.Requests())
	}
	c, p := spans[0], spans[1]
	if c.Name != "GET /api/data/v9.2/contacts({id})" || c.Kind != 3 || p.Kind != 2 {
		t.Errorf("child %q kind %d, parent kind %d", c.Name, c.Kind, p.Kind)
	}
	if c.TraceID != p.TraceID || c.ParentID != p.SpanID || p.ParentID != "" {
		t.Errorf("ids: child %s/%s parent %s/%s", c.TraceID, c.ParentID, p.TraceID, p.SpanID)
	}
	if c.Attrs["connector.portal"] != "Partners" || c.Attrs["connector.outcome"] != "" {
		t.Errorf("child attributes %v, want the portal and no outcome (not a name)", c.Attrs)
	}
	if c.Resource["service.name"] != "connector-test" {
		t.Errorf("resource %v", c.Resource)
	}
}
