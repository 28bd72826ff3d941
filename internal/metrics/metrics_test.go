package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/d365portal/connector/internal/dataverse"
)

// scrape fetches the handler over loopback HTTP, as Prometheus would, and
// parses the text exposition.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape status %d: %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type = %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// sample finds the series of family name whose labels are exactly labels.
func sample(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("family %s missing", name)
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
				continue next
			}
		}
		return m
	}
	var have []string
	for _, m := range f.GetMetric() {
		have = append(have, m.String())
	}
	t.Fatalf("%s%v missing; have %v", name, labels, have)
	return nil
}

func counter(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	return sample(t, fams, name, labels).GetCounter().GetValue()
}

func gauge(t *testing.T, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	return sample(t, fams, name, nil).GetGauge().GetValue()
}

func TestInvitationCounters(t *testing.T) {
	m := New()
	m.InitPortals("partners", "customers")
	m.InvitationCreated("partners")
	m.InvitationCreated("partners")
	m.InvitationSent("partners")
	m.InvitationFailed("customers")
	m.Redeemed("partners")

	fams := scrape(t, m)
	for _, tt := range []struct {
		name, portal string
		want         float64
	}{
		{"connector_invitations_created_total", "partners", 2},
		{"connector_invitations_created_total", "customers", 0},
		{"connector_invitations_sent_total", "partners", 1},
		{"connector_invitations_sent_total", "customers", 0},
		{"connector_invitations_failed_total", "customers", 1},
		{"connector_invitations_failed_total", "partners", 0},
		{"connector_redemptions_total", "partners", 1},
		{"connector_redemptions_total", "customers", 0},
	} {
		if got := counter(t, fams, tt.name, map[string]string{"portal": tt.portal}); got != tt.want {
			t.Errorf("%s{portal=%q} = %v, want %v", tt.name, tt.portal, got, tt.want)
		}
	}
}

func TestRuntimeAndProcessCollectors(t *testing.T) {
	fams := scrape(t, New())
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_start_time_seconds",
		"process_cpu_seconds_total", "promhttp_metric_handler_requests_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
}

// Two instances in one process must not share or collide on series: nothing
// is registered globally.
func TestInstancesAreIndependent(t *testing.T) {
	a, b := New(), New()
	a.InvitationSent("p")
	if got := counter(t, scrape(t, a), "connector_invitations_sent_total", map[string]string{"portal": "p"}); got != 1 {
		t.Errorf("a = %v", got)
	}
	if _, ok := scrape(t, b)["connector_invitations_sent_total"]; ok {
		t.Error("b has a's series")
	}
}

func TestDataverseHooks(t *testing.T) {
	m := New()
	h := m.DataverseHooks()
	h.OnRequest(dataverse.RequestInfo{Set: "contacts", Operation: "retrieve", Method: "GET", StatusCode: 200, Attempt: 1, Duration: 30 * time.Millisecond})
	h.OnRequest(dataverse.RequestInfo{Set: "adx_invitations", Operation: "create", Method: "POST", StatusCode: 429, Attempt: 1, Duration: 10 * time.Millisecond})
	h.OnThrottle(dataverse.RequestInfo{Operation: "create", StatusCode: 429}, 3*time.Second)
	h.OnRetry(dataverse.RequestInfo{Operation: "create", StatusCode: 429}, 3*time.Second)
	h.OnRequest(dataverse.RequestInfo{Operation: "create", Method: "POST", StatusCode: 204, Attempt: 2, Duration: 20 * time.Millisecond})
	h.OnRequest(dataverse.RequestInfo{Operation: "query", Method: "GET", Attempt: 1, Err: errors.New("connection reset")})
	h.OnRequest(dataverse.RequestInfo{Method: "GET", StatusCode: 200})

	fams := scrape(t, m)
	for _, tt := range []struct {
		op, status string
		want       float64
	}{
		{"retrieve", "200", 1}, {"create", "429", 1}, {"create", "204", 1}, {"query", "error", 1}, {"unknown", "200", 1},
	} {
		got := counter(t, fams, "connector_dataverse_requests_total", map[string]string{"operation": tt.op, "status": tt.status})
		if got != tt.want {
			t.Errorf("requests{%s,%s} = %v, want %v", tt.op, tt.status, got, tt.want)
		}
	}
	hist := sample(t, fams, "connector_dataverse_request_duration_seconds", map[string]string{"operation": "create"}).GetHistogram()
	if hist.GetSampleCount() != 2 || hist.GetSampleSum() < 0.029 || hist.GetSampleSum() > 0.031 {
		t.Errorf("create duration count %d sum %v", hist.GetSampleCount(), hist.GetSampleSum())
	}
	if got := counter(t, fams, "connector_dataverse_throttles_total", map[string]string{"operation": "create"}); got != 1 {
		t.Errorf("throttles = %v", got)
	}
	if got := counter(t, fams, "connector_dataverse_throttle_wait_seconds_total", map[string]string{"operation": "create"}); got != 3 {
		t.Errorf("throttle wait = %v", got)
	}
	if got := counter(t, fams, "connector_dataverse_retries_total", map[string]string{"operation": "create"}); got != 1 {
		t.Errorf("retries = %v", got)
	}
}

// The hooks plugged into a real client see one throttled attempt, a retry
// and the successful attempt.
func TestDataverseHooksWithClient(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "0.01")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"code":"0x80072322","message":"Number of requests exceeded the limit"}}`)
			return
		}
		io.WriteString(w, `{"UserId":"u","BusinessUnitId":"b","OrganizationId":"o"}`)
	}))
	defer srv.Close()

	m := New()
	c, err := dataverse.New(dataverse.Config{URL: srv.URL}, nil, &dataverse.Options{
		HTTPClient: srv.Client(),
		Hooks:      m.DataverseHooks(),
		RetryDelay: time.Millisecond, MaxRetryDelay: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WhoAmI(context.Background()); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, m)
	if got := counter(t, fams, "connector_dataverse_requests_total", map[string]string{"operation": "whoami", "status": "429"}); got != 1 {
		t.Errorf("429 attempts = %v", got)
	}
	if got := counter(t, fams, "connector_dataverse_requests_total", map[string]string{"operation": "whoami", "status": "200"}); got != 1 {
		t.Errorf("200 attempts = %v", got)
	}
	if got := counter(t, fams, "connector_dataverse_throttles_total", map[string]string{"operation": "whoami"}); got != 1 {
		t.Errorf("throttles = %v", got)
	}
	if got := counter(t, fams, "connector_dataverse_retries_total", map[string]string{"operation": "whoami"}); got != 1 {
		t.Errorf("retries = %v", got)
	}
}

func TestQueueCollector(t *testing.T) {
	m := New()
	var fail atomic.Bool
	var hadDeadline atomic.Bool
	err := m.RegisterQueue(func(ctx context.Context) (QueueStats, error) {
		_, ok := ctx.Deadline()
		hadDeadline.Store(ok)
		if fail.Load() {
			return QueueStats{}, errors.New("redis: connection refused")
		}
		return QueueStats{Depth: 7, Pending: 2, OldestAge: 90 * time.Second, DeadLetters: 1}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, m)
	for name, want := range map[string]float64{
		"connector_queue_up": 1, "connector_queue_depth": 7, "connector_queue_pending": 2,
		"connector_queue_oldest_age_seconds": 90, "connector_queue_dead_letters": 1,
	} {
		if got := gauge(t, fams, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if !hadDeadline.Load() {
		t.Error("stats called without a deadline")
	}

	// A failing read reports up=0 and leaves the gauges out instead of
	// pretending the queue is empty.
	fail.Store(true)
	fams = scrape(t, m)
	if got := gauge(t, fams, "connector_queue_up"); got != 0 {
		t.Errorf("up = %v after a failed read", got)
	}
	if _, ok := fams["connector_queue_depth"]; ok {
		t.Error("depth reported although the read failed")
	}

	if err := m.RegisterQueue(func(context.Context) (QueueStats, error) { return QueueStats{}, nil }); err == nil {
		t.Error("second RegisterQueue succeeded")
	}
	if err := m.RegisterQueue(nil); err == nil {
		t.Error("RegisterQueue(nil) succeeded")
	}
}

func TestMiddleware(t *testing.T) {
	m := New()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("POST /things", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "implicit 200")
	})
	mux.HandleFunc("GET /early", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		f, ok := w.(http.Flusher)
		if !ok {
			t.Error("wrapped writer is not a Flusher")
			return
		}
		io.WriteString(w, "chunk")
		f.Flush()
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("ResponseController through the wrapper: %v", err)
		}
	})
	h := m.Middleware(func(r *http.Request) string { return r.Pattern })(mux)
	srv := httptest.NewServer(h)
	defer srv.Close()

	do := func(method, path string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	do("GET", "/things/1")
	do("GET", "/things/2")
	do("POST", "/things")
	do("GET", "/nowhere")
	do("BREW", "/things/1")
	do("GET", "/early")
	do("GET", "/stream")

	fams := scrape(t, m)
	for _, tt := range []struct {
		route, method, status string
		count                 uint64
	}{
		{"GET /things/{id}", "GET", "201", 2},
		{"POST /things", "POST", "200", 1},
		{"unmatched", "GET", "404", 1},
		{"unmatched", "OTHER", "405", 1}, // ServeMux answers 405 for a known path, unknown method
		{"GET /early", "GET", "202", 1},
		{"GET /stream", "GET", "200", 1},
	} {
		hist := sample(t, fams, "connector_http_request_duration_seconds",
			map[string]string{"route": tt.route, "method": tt.method, "status": tt.status}).GetHistogram()
		if hist.GetSampleCount() != tt.count {
			t.Errorf("%s %s %s: count %d, want %d", tt.route, tt.method, tt.status, hist.GetSampleCount(), tt.count)
		}
	}
	if got := gauge(t, fams, "connector_http_requests_in_flight"); got != 0 {
		t.Errorf("in flight = %v after all requests finished", got)
	}
}

func TestMiddlewareRecordsPanicsAs500(t *testing.T) {
	m := New()
	h := m.Middleware(func(*http.Request) string { return "boom" })(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("handler bug")
	}))
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic swallowed; it must reach the recovery middleware or net/http")
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}()
	hist := sample(t, scrape(t, m), "connector_http_request_duration_seconds",
		map[string]string{"route": "boom", "method": "GET", "status": "500"}).GetHistogram()
	if hist.GetSampleCount() != 1 {
		t.Errorf("count = %d", hist.GetSampleCount())
	}
}
