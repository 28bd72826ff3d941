package portalweb

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/telemetry"
	"github.com/d365portal/connector/internal/telemetry/telemetrytest"
)

// With tracing on, each portal request is one server span named by its
// route, with the status; a browser's traceparent starts no trace of ours
// (the span is a new root linked to it); the code, the password, the email
// address and the session cookie reach no span.
func TestTracePortalRequests(t *testing.T) {
	mem := telemetrytest.NewMemory(t)
	h, f := fakeSite(t, func(c *Config) { c.Tracing = mem.Provider })
	code := f.addInvitation(testPortal, "c1", "Ada", "Lovelace", "ada@example.com")
	b := h.browser()
	const remote = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	b.header.Set("traceparent", remote)
	signUp(t, b, code)
	b.get("/no/such/page").wantStatus(http.StatusNotFound)

	spans := mem.Spans(t)
	got := map[string]int64{}
	for _, s := range spans {
		if s.SpanKind != trace.SpanKindServer {
			t.Errorf("span %q kind %v, want server", s.Name, s.SpanKind)
			continue
		}
		a := telemetrytest.Attrs(s.Attributes)
		got[s.Name] = a["http.response.status_code"].AsInt64()
		if method, _, _ := strings.Cut(s.Name, " "); a["http.route"].AsString() != "" && s.Name != method+" "+a["http.route"].AsString() {
			t.Errorf("span %q has http.route %q", s.Name, a["http.route"].AsString())
		}
		if s.SpanContext.TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent.IsValid() {
			t.Errorf("span %q continues the browser's trace; want a new root", s.Name)
		}
		if len(s.Links) != 1 || s.Links[0].SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("span %q links %v, want the browser's span", s.Name, s.Links)
		}
	}
	for name, status := range map[string]int64{
		"GET /invitation": 200, "POST /invitation": 303, "GET /profile": 200, "GET": 404,
	} {
		if got[name] != status {
			t.Errorf("span %q status %d, want %d (spans: %v)", name, got[name], status, got)
		}
	}
	telemetrytest.AssertNoSecret(t, spans, map[string]string{
		"invitation code": code, "password": goodPassword, "email address": "ada@example.com",
		"session cookie": b.cookie(h.sessionCookieName()),
	})
}

// Mounted behind a mux (as cmd mounts the site at "/"), the span keeps the
// route's name: otelhttp would rename it by the mux's pattern.
func TestTraceBehindMux(t *testing.T) {
	mem := telemetrytest.NewMemory(t)
	h, _ := fakeSite(t, func(c *Config) { c.Tracing = mem.Provider })
	mux := http.NewServeMux()
	mux.Handle("/", h.srv.Handler())
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "https://invite.example.com/login", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET /login: %d", w.Code)
	}
	spans := mem.Spans(t)
	if len(spans) != 1 || spans[0].Name != "GET /login" {
		t.Fatalf("spans %v, want one named GET /login", spans)
	}
}

// discardExporter takes spans and drops them: the benchmark measures the
// spans' cost in the request path, not an exporter's.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkTracedPage is GET /login (a session and its CSRF token written to
// redis-server) on two sites, tracing off and on (spans built, sanitized and
// dropped), alternating request by request in the same run so both see the
// same machine: the per-request cost of the server span. It reports each
// site's mean time, their ratio and the allocations tracing adds.
func BenchmarkTracedPage(b *testing.B) {
	tp, stop, err := telemetry.New(context.Background(), telemetry.Config{Enabled: true, Exporter: discardExporter{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = stop(context.Background()) })
	sites := []http.Handler{
		newHarness(b, newFakeAccounts(testPortals()...), nil).srv.Handler(),
		newHarness(b, newFakeAccounts(testPortals()...), func(c *Config) { c.Tracing = tp }).srv.Handler(),
	}
	get := func(h http.Handler) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "https://invite.example.com/login", nil))
		if w.Code != http.StatusOK {
			b.Fatalf("GET /login: %d", w.Code)
		}
	}
	allocs := func(h http.Handler) float64 { return testing.AllocsPerRun(200, func() { get(h) }) }
	added := allocs(sites[1]) - allocs(sites[0])
	var spent [2]time.Duration
	b.ResetTimer()
	for b.Loop() {
		for i, h := range sites {
			t0 := time.Now()
			get(h)
			spent[i] += time.Since(t0)
		}
	}
	b.StopTimer()
	off, on := float64(spent[0].Nanoseconds())/float64(b.N), float64(spent[1].Nanoseconds())/float64(b.N)
	b.ReportMetric(off, "off-ns/op")
	b.ReportMetric(on, "on-ns/op")
	b.ReportMetric(on/off, "on/off")
	b.ReportMetric(added, "added-allocs/op")
	b.ReportMetric(0, "ns/op")
}
