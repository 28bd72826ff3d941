package telemetry

import (
	"compress/gzip"
	"context"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// envMap is a getenv over a map.
type envMap map[string]string

func (m envMap) get(k string) string { return m[k] }

// receiver is an OTLP/HTTP trace receiver in the test process: it decodes
// each export request with the collector's protobuf types.
type receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []*coltracepb.ExportTraceServiceRequest
	headers  []http.Header
	paths    []string

	hold    chan struct{} // when set, a request waits until it is closed
	arrived chan struct{} // one send per request that reached the handler
}

func startReceiver(t testing.TB, hold bool) *receiver {
	t.Helper()
	return newReceiver(t, hold, false)
}

// startTLSReceiver is a receiver over https with httptest's certificate.
func startTLSReceiver(t testing.TB) *receiver {
	t.Helper()
	return newReceiver(t, false, true)
}

func newReceiver(t testing.TB, hold, useTLS bool) *receiver {
	r := &receiver{arrived: make(chan struct{}, 1024)}
	if hold {
		r.hold = make(chan struct{})
	}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	// A refused certificate is what one test is about; keep its handshake
	// errors out of the output.
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if useTLS {
		r.srv.StartTLS()
	} else {
		r.srv.Start()
	}
	t.Cleanup(func() {
		r.release()
		r.srv.Close()
	})
	return r
}

func (r *receiver) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hold != nil {
		select {
		case <-r.hold:
		default:
			close(r.hold)
		}
	}
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	select {
	case r.arrived <- struct{}{}:
	default:
	}
	if r.hold != nil {
		select {
		case <-r.hold:
		case <-req.Context().Done():
			return
		}
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.requests = append(r.requests, &msg)
	r.headers = append(r.headers, req.Header.Clone())
	r.paths = append(r.paths, req.URL.Path)
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// receivedSpan is one span as it arrived, with its resource's attributes.
type receivedSpan struct {
	resource map[string]string
	scope    string
	span     *tracepb.Span
}

func (r *receiver) spans() []receivedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []receivedSpan
	for _, req := range r.requests {
		for _, rs := range req.GetResourceSpans() {
			res := kvMap(rs.GetResource().GetAttributes())
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					out = append(out, receivedSpan{resource: res, scope: ss.GetScope().GetName(), span: sp})
				}
			}
		}
	}
	return out
}

func kvMap(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch {
		case v.GetArrayValue() != nil:
			var s []string
			for _, e := range v.GetArrayValue().GetValues() {
				s = append(s, e.GetStringValue())
			}
			m[kv.GetKey()] = "[" + strings.Join(s, " ") + "]"
		case v.GetStringValue() != "":
			m[kv.GetKey()] = v.GetStringValue()
		default:
			m[kv.GetKey()] = anyString(v)
		}
	}
	return m
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_IntValue:
		return attribute.Int64Value(x.IntValue).Emit()
	case *commonpb.AnyValue_BoolValue:
		return attribute.BoolValue(x.BoolValue).Emit()
	case *commonpb.AnyValue_DoubleValue:
		return attribute.Float64Value(x.DoubleValue).Emit()
	default:
		return ""
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// logRecorder keeps the records logged through it.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// warnings returns the attributes of each dropped-spans warning.
func (l *logRecorder) warnings() []map[string]slog.Value {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]slog.Value
	for _, r := range l.records {
		if r.Level != slog.LevelWarn || r.Message != "telemetry: trace spans dropped" {
			continue
		}
		m := map[string]slog.Value{}
		r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value; return true })
		out = append(out, m)
	}
	return out
}

// clock is a clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// memTracing sets tracing up with the SDK's in-memory exporter behind the
// sanitizer and the queue, as New builds it for OTLP.
func memTracing(t testing.TB, cfg Config) (trace.TracerProvider, *tracetest.InMemoryExporter, func()) {
	t.Helper()
	mem := tracetest.NewInMemoryExporter()
	cfg.Exporter = mem
	tp, shutdown, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	flush := func() {
		t.Helper()
		if sdk, ok := tp.(*sdktrace.TracerProvider); ok {
			if err := sdk.ForceFlush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	return tp, mem, flush
}

func forceFlush(t testing.TB, tp trace.TracerProvider) {
	t.Helper()
	sdk, ok := tp.(*sdktrace.TracerProvider)
	if !ok {
		t.Fatalf("provider is %T, want the SDK's", tp)
	}
	if err := sdk.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func attrMap(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}
