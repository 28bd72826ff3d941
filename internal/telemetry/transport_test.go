package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Each try is a client span named by the path pattern, under the caller's
// span, with the status and Retry-After; the server sees the span's
// traceparent; the query never reaches the span.
func TestTransportSpans(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("traceparent"))
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = io.WriteString(w, `{"value":[]}`)
	}))
	defer srv.Close()

	tp, mem, flush := memTracing(t, Config{Enabled: true})
	client := &http.Client{Transport: NewTransport(nil, tp, Propagator())}
	ctx, op := tp.Tracer("test").Start(context.Background(), "dataverse.Query")
	url := srv.URL + "/api/data/v9.2/contacts(6f1c3e1a-28a4-4f0e-9a55-2d3c1e0f7b10)?$filter=emailaddress1%20eq%20%27ann@example.com%27"
	for try := 1; try <= 2; try++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if req.Header.Get("traceparent") != "" {
			t.Error("the transport changed the caller's request headers")
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if try == 1 {
			RecordRetry(ctx, 1, 0, resp.StatusCode)
		}
	}
	op.End()
	flush()

	spans := mem.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("exported %d spans, want 2 tries and the operation", len(spans))
	}
	var tries int
	for _, s := range spans {
		if s.Name == "dataverse.Query" {
			continue
		}
		tries++
		if s.Name != "GET /api/data/v9.2/contacts({id})" {
			t.Errorf("span name %q", s.Name)
		}
		if s.SpanKind != trace.SpanKindClient || s.Parent.SpanID() != op.SpanContext().SpanID() {
			t.Errorf("try span kind %v parent %s, want a client span under the operation", s.SpanKind, s.Parent.SpanID())
		}
		a := attrMap(s.Attributes)
		if a[semconv.URLPathKey].AsString() != "/api/data/v9.2/contacts({id})" || a[semconv.ServerAddressKey].AsString() != "127.0.0.1" {
			t.Errorf("attributes %v", s.Attributes)
		}
		for _, kv := range s.Attributes {
			if v := kv.Value.Emit(); contains(v, "ann@") || contains(v, "filter") {
				t.Errorf("%s = %q: the query reached the span", kv.Key, v)
			}
		}
		switch a[semconv.HTTPResponseStatusCodeKey].AsInt64() {
		case 429:
			if a[semconv.ErrorTypeKey].AsString() != "429" || s.Status.Code != codes.Error {
				t.Errorf("429 try: error.type %q status %v", a[semconv.ErrorTypeKey].AsString(), s.Status)
			}
			if got := a[KeyRetryAfter].AsStringSlice(); len(got) != 1 || got[0] != "2" {
				t.Errorf("429 try Retry-After %v, want [2]", got)
			}
		case 200:
			if s.Status.Code == codes.Error {
				t.Errorf("200 try has error status")
			}
		default:
			t.Errorf("try with status %v", a[semconv.HTTPResponseStatusCodeKey])
		}
	}
	if tries != 2 {
		t.Errorf("%d try spans, want 2", tries)
	}
	mu.Lock()
	defer mu.Unlock()
	tryIDs := map[string]bool{}
	for _, s := range spans {
		tryIDs[s.SpanContext.SpanID().String()] = true
	}
	for _, tp := range seen {
		if len(tp) != 55 || !tryIDs[tp[36:52]] {
			t.Errorf("server saw traceparent %q, want one naming a try span", tp)
		}
	}
}

// A transport error is a span with a low-cardinality error.type, not the
// error's text.
func TestTransportError(t *testing.T) {
	tp, mem, flush := memTracing(t, Config{Enabled: true})
	client := &http.Client{Transport: NewTransport(nil, tp, nil)}
	_, err := client.Get("http://" + closedAddr(t) + "/api/data/v9.2/WhoAmI()")
	if err == nil {
		t.Fatal("request to a closed port succeeded")
	}
	flush()
	spans := mem.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("exported %d spans, want 1", len(spans))
	}
	a := attrMap(spans[0].Attributes)
	if got := a[semconv.ErrorTypeKey].AsString(); got != "connection_refused" || spans[0].Status.Code != codes.Error {
		t.Errorf("error.type %q status %v, want connection_refused and Error", got, spans[0].Status)
	}
	if spans[0].Name != "GET /api/data/v9.2/WhoAmI()" {
		t.Errorf("name %q", spans[0].Name)
	}
}

func TestErrorType(t *testing.T) {
	if got := errorType(context.Canceled); got != "canceled" {
		t.Errorf("errorType(Canceled) = %q", got)
	}
	if got := errorType(context.DeadlineExceeded); got != "timeout" {
		t.Errorf("errorType(DeadlineExceeded) = %q", got)
	}
	if got := errorType(errors.New("code AB12 for ann@example.com")); got != "_OTHER" {
		t.Errorf("errorType(text) = %q", got)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
