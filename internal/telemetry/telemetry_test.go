package telemetry

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Off (the default), nothing is recorded, nothing is exported, nothing is
// put in a stream entry, no goroutine is started and the Dataverse
// transport is left as it is.
func TestOffProducesNothing(t *testing.T) {
	for name, cfg := range map[string]Config{
		"default":           {},
		"sdk disabled":      {Enabled: true, Getenv: envMap{"OTEL_SDK_DISABLED": "true"}.get},
		"exporter none":     {Enabled: true, Getenv: envMap{"OTEL_TRACES_EXPORTER": "none"}.get},
		"bad env while off": {Getenv: envMap{"OTEL_TRACES_SAMPLER": "nonsense"}.get},
	} {
		t.Run(name, func(t *testing.T) {
			// Goroutines left by earlier tests may still be ending, so
			// rather than expect an exact count, build many providers: one
			// goroutine each would show.
			const n = 50
			before := runtime.NumGoroutine()
			keep := make([]any, 0, n)
			for range n {
				tp, stop, err := New(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				keep = append(keep, tp, stop)
			}
			if after := runtime.NumGoroutine(); after-before >= n {
				t.Errorf("goroutines %d before %d calls of New, %d after", before, n, after)
			}
			runtime.KeepAlive(keep)
			tp, mem, flush := memTracing(t, cfg)
			if !Off(tp) {
				t.Fatalf("provider is %T, want the one for tracing off", tp)
			}
			ctx, span := tp.Tracer("test").Start(context.Background(), "POST /hooks/dataverse")
			if span.IsRecording() || span.SpanContext().IsValid() {
				t.Errorf("span recording=%v valid=%v, want neither", span.IsRecording(), span.SpanContext().IsValid())
			}
			fields := map[string]string{"contact": "x"}
			Inject(ctx, Propagator(), fields)
			if len(fields) != 1 {
				t.Errorf("fields after Inject = %v, want them untouched", fields)
			}
			RecordRetry(ctx, 1, time.Second, 429)
			span.End()
			flush()
			if got := mem.GetSpans(); len(got) != 0 {
				t.Errorf("exported %d spans with tracing off", len(got))
			}
			next := http.DefaultTransport
			if rt := NewTransport(next, tp, Propagator()); rt != next {
				t.Errorf("NewTransport with tracing off wrapped the transport (%T)", rt)
			}
		})
	}
}

// Bad values fail New and name the variable or key; a header value (often
// an API key) is never quoted.
func TestNewRejectsBadSettings(t *testing.T) {
	for _, c := range []struct {
		name     string
		endpoint string
		env      envMap
		want     string
	}{
		{"endpoint scheme", "collector:4318", nil, "telemetry.traces.endpoint"},
		{"endpoint query", "http://collector:4318/v1/traces?key=abc", nil, "telemetry.traces.endpoint"},
		{"env endpoint", "", envMap{"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://x"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"grpc", "", envMap{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"exporter", "", envMap{"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"},
		{"sampler", "", envMap{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER"},
		{"sampler arg", "", envMap{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"},
		{"timeout", "", envMap{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "10s"}, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"},
		{"compression", "", envMap{"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "OTEL_EXPORTER_OTLP_COMPRESSION"},
		{"queue", "", envMap{"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE"},
		{"batch over queue", "", envMap{"OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "20"}, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"},
		{"limit", "", envMap{"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "-1"}, "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"},
		{"resource", "", envMap{"OTEL_RESOURCE_ATTRIBUTES": "a=1,b"}, "OTEL_RESOURCE_ATTRIBUTES"},
		{"headers", "", envMap{"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cr%ZZet"}, "OTEL_EXPORTER_OTLP_HEADERS"},
		{"header name", "", envMap{"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "bad key=s3cret"}, "OTEL_EXPORTER_OTLP_TRACES_HEADERS"},
		{"ca file", "", envMap{"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"}, "OTEL_EXPORTER_OTLP_CERTIFICATE"},
		{"client key alone", "", envMap{"OTEL_EXPORTER_OTLP_CLIENT_KEY": "/nonexistent/key.pem"}, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := New(context.Background(), Config{Enabled: true, Endpoint: c.endpoint, Getenv: c.env.get})
			if err == nil {
				t.Fatalf("New succeeded, want an error naming %s", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not name %s", err, c.want)
			}
			if strings.Contains(err.Error(), "s3cr") {
				t.Errorf("error %q quotes a header value", err)
			}
		})
	}
}

func TestTracesURL(t *testing.T) {
	for _, c := range []struct {
		name       string
		configured string
		env        envMap
		want       string
	}{
		{"default", "", nil, "http://localhost:4318/v1/traces"},
		{"configured base", "http://collector:4318", nil, "http://collector:4318/v1/traces"},
		{"configured full", "https://otlp.example.com/otlp/v1/traces", nil, "https://otlp.example.com/otlp/v1/traces"},
		{"configured wins", "http://a:4318", envMap{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4318/t"}, "http://a:4318/v1/traces"},
		{"signal as is", "", envMap{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4318/t", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://b:4318/t"},
		{"signal no path", "", envMap{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4318"}, "http://b:4318/"},
		{"base", "", envMap{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://c:4318/v1/traces"},
		{"base with path", "", envMap{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c/otlp/"}, "https://c/otlp/v1/traces"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := tracesURL(c.configured, env(c.env.get))
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("tracesURL = %q, want %q", got, c.want)
			}
		})
	}
}

// The sampler comes from OTEL_TRACES_SAMPLER: always_off records nothing
// and exports nothing.
func TestSamplerFromEnv(t *testing.T) {
	tp, mem, flush := memTracing(t, Config{Enabled: true, Getenv: envMap{"OTEL_TRACES_SAMPLER": "always_off"}.get})
	_, span := tp.Tracer("test").Start(context.Background(), "x")
	if span.IsRecording() {
		t.Error("span recording with always_off")
	}
	span.End()
	flush()
	if n := len(mem.GetSpans()); n != 0 {
		t.Errorf("exported %d spans with always_off", n)
	}

	// parentbased_always_on (the default) follows an unsampled parent.
	tp, mem, flush = memTracing(t, Config{Enabled: true})
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Remote: true,
	})
	_, span = tp.Tracer("test").Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "child")
	span.End()
	flush()
	if n := len(mem.GetSpans()); n != 0 {
		t.Errorf("exported %d spans under an unsampled parent", n)
	}
}

// With tracing off, a span started under a recording span (from some other
// provider) must not be that span: ending it would end the caller's.
func TestOffUnderRecordingParent(t *testing.T) {
	other, _, _ := memTracing(t, Config{Enabled: true})
	ctx, parent := other.Tracer("other").Start(context.Background(), "parent")
	defer parent.End()
	off, _, err := New(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, child := off.Tracer("test").Start(ctx, "child")
	child.End()
	if child == parent || child.IsRecording() {
		t.Fatalf("child %T recording=%v, want a separate non-recording span", child, child.IsRecording())
	}
	if !parent.IsRecording() {
		t.Fatal("ending the child ended the parent")
	}
	if !child.SpanContext().Equal(parent.SpanContext()) {
		t.Errorf("child context %v, want the parent's carried along", child.SpanContext())
	}
}
