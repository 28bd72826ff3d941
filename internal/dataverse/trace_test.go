package dataverse

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/telemetry"
	"github.com/d365portal/connector/internal/telemetry/telemetrytest"
)

// With the tracing transport under the client and OnWait recording the
// retry, a throttled call is two client spans (429 with its Retry-After,
// then 200) under the caller's span, which holds the throttling wait; no
// span carries the query, whose filter holds an email address.
func TestTracedCallsWithThrottling(t *testing.T) {
	const email = "ann.smith@example.com"
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 0 {
			w.Header().Set("Retry-After", "2")
			writeJSON(w, 429, `{"error":{"code":"0x80072322","message":"Number of requests exceeded the limit"}}`)
			return
		}
		writeJSON(w, 200, `{"value":[{"contactid":"5d9e2b71-0c4a-4f3e-b8a6-7e1d3c9f2a48","emailaddress1":"`+email+`"}]}`)
	})
	mem := telemetrytest.NewMemory(t)
	tp := mem.Provider
	base := f.srv.Client()
	hc := &http.Client{Transport: telemetry.NewTransport(base.Transport, tp, telemetry.Propagator())}
	c, w := testClient(t, f, Config{}, &Options{HTTPClient: hc, Hooks: Hooks{
		OnWait: func(ctx context.Context, ri RequestInfo, d time.Duration) {
			telemetry.RecordRetry(ctx, ri.Attempt, d, ri.StatusCode)
		},
	}})

	ctx, parent := tp.Tracer("test").Start(context.Background(), "invite")
	for _, err := range c.Query(ctx, "contacts", &Query{Select: []string{"contactid"}, Filter: "emailaddress1 eq " + Quote(email)}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	parent.End()
	if got := w.all(); len(got) != 1 || got[0] != 2*time.Second {
		t.Fatalf("waits %v, want the 2s Retry-After", got)
	}
	reqs := f.requests()
	if len(reqs) != 2 || !strings.HasPrefix(reqs[1].Header.Get("traceparent"), "00-"+parent.SpanContext().TraceID().String()) {
		t.Fatalf("requests %d; second traceparent %q, want the caller's trace", len(reqs), reqs[1].Header.Get("traceparent"))
	}

	spans := mem.Spans(t)
	var tries []tracetest.SpanStub
	var caller tracetest.SpanStub
	for _, s := range spans {
		if s.SpanKind == trace.SpanKindClient {
			tries = append(tries, s)
		} else if s.Name == "invite" {
			caller = s
		}
	}
	telemetrytest.AssertNoSecret(t, spans, map[string]string{"email address": "ann.smith", "filter": "emailaddress1", "query": "$filter"})
	if len(tries) != 2 {
		t.Fatalf("%d client spans, want 2 (one per try): %v", len(tries), spans)
	}
	for i, want := range []int64{429, 200} {
		s := tries[i]
		a := telemetrytest.Attrs(s.Attributes)
		if s.Name != "GET /api/data/v9.2/contacts" || s.Parent.SpanID() != caller.SpanContext.SpanID() ||
			a["http.response.status_code"].AsInt64() != want || a["http.request.method"].AsString() != "GET" {
			t.Errorf("try %d: %q parent %v attrs %v, want GET /api/data/v9.2/contacts under the caller with %d", i+1, s.Name, s.Parent.SpanID(), a, want)
		}
	}
	if ra := telemetrytest.Attrs(tries[0].Attributes)["http.response.header.retry-after"].AsStringSlice(); len(ra) != 1 || ra[0] != "2" {
		t.Errorf("429 try retry-after %v, want [2]", ra)
	}
	if len(caller.Events) != 1 || caller.Events[0].Name != "retry" {
		t.Fatalf("caller events %v, want one retry", caller.Events)
	}
	ev := telemetrytest.Attrs(caller.Events[0].Attributes)
	if ev["connector.retry.wait_ms"].AsInt64() != 2000 || ev["http.response.status_code"].AsInt64() != 429 || ev["http.request.resend_count"].AsInt64() != 1 {
		t.Errorf("retry event %v, want wait 2000 ms after a 429 on try 1", ev)
	}
}
