package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// DefaultServiceName is service.name when neither Config nor the
// environment names the service.
const DefaultServiceName = "connector"

// Config mirrors telemetry.traces in the configuration file, plus what the
// command passes in. The zero value is tracing off.
type Config struct {
	// Enabled is telemetry.traces.enabled. Default false: New returns a
	// provider that does nothing, and reads nothing else.
	Enabled bool
	// Endpoint is telemetry.traces.endpoint: an http:// or https:// URL;
	// with no path, /v1/traces is added. Default: the OTEL_EXPORTER_OTLP_*
	// endpoint variables, then http://localhost:4318/v1/traces.
	Endpoint string
	// ServiceName is service.name unless OTEL_SERVICE_NAME or a service.name
	// in OTEL_RESOURCE_ATTRIBUTES says otherwise. Default DefaultServiceName.
	ServiceName string
	// ServiceVersion is service.version (the build's version). Default none.
	ServiceVersion string
	// Getenv reads the OTEL_* variables and the proxy variables. Default:
	// no environment.
	Getenv func(string) string
	// Logger receives the dropped-spans warnings. Default: slog.Default().
	Logger *slog.Logger
	// Sanitizer decides which attributes leave the process. Default:
	// NewSanitizer(DefaultRules()).
	Sanitizer *Sanitizer
	// Exporter, when set, receives the spans instead of OTLP over HTTP
	// (tests use the SDK's in-memory exporter). It still sits behind the
	// sanitizer and the bounded queue.
	Exporter sdktrace.SpanExporter

	// now is the clock of the dropped-spans warning; tests move it.
	now func() time.Time
}

// WarnEvery is the least time between two dropped-spans warnings.
const WarnEvery = time.Minute

// New sets tracing up from cfg and returns the provider to hand to every
// instrumented component, and the function that flushes and stops it
// (bounded by its context). With tracing off the provider does nothing: no
// goroutine, no exporter, and a span start and end allocate nothing (see
// Off and BenchmarkOffOverhead).
//
// New fails, naming the key or variable, on a bad endpoint, a bad OTEL_*
// value, a protocol other than OTLP/HTTP, or certificate files that cannot
// be read. It does not connect: an endpoint that is down only drops spans.
func New(ctx context.Context, cfg Config) (trace.TracerProvider, func(context.Context) error, error) {
	t, err := newTracing(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return t.provider, t.shutdown, nil
}

// tracing is what New builds; queue is nil when tracing is off.
type tracing struct {
	provider trace.TracerProvider
	queue    *queue
	shutdown func(context.Context) error
}

func newTracing(ctx context.Context, cfg Config) (*tracing, error) {
	off := &tracing{provider: offProvider{}, shutdown: func(context.Context) error { return nil }}
	if !cfg.Enabled {
		return off, nil
	}
	e := env(cfg.Getenv)
	if cfg.Getenv == nil {
		e = func(string) string { return "" }
	}
	disabled, err := e.disabled()
	if err != nil {
		return nil, err
	}
	if disabled {
		return off, nil
	}
	s, err := readSettings(cfg, e)
	if err != nil {
		return nil, err
	}
	res, err := newResource(ctx, cfg, s)
	if err != nil {
		return nil, err
	}
	exp := cfg.Exporter
	endpoint := "exporter"
	if exp == nil {
		if exp, err = newOTLP(ctx, s); err != nil {
			return nil, err
		}
		u, _ := url.Parse(s.endpoint)
		endpoint = redactURL(u)
	}
	san := cfg.Sanitizer
	if san == nil {
		san = NewSanitizer(DefaultRules())
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	now := cfg.now
	if now == nil {
		now = time.Now
	}
	q := newQueue(SanitizeExporter(exp, san), s.batch, newDropWarner(logger, endpoint, now))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(s.sampler),
		sdktrace.WithRawSpanLimits(s.limits),
		sdktrace.WithSpanProcessor(q),
	)
	shutdown := func(ctx context.Context) error {
		err := tp.Shutdown(ctx)
		q.warner.final(q.held())
		if err != nil {
			return fmt.Errorf("telemetry: shutdown: %w", err)
		}
		return nil
	}
	return &tracing{provider: tp, queue: q, shutdown: shutdown}, nil
}

// Propagator is the one propagator the connector uses: W3C trace context
// only. Baggage is left out on purpose: it would carry whatever a caller
// puts in it into Redis and onward.
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

func newResource(ctx context.Context, cfg Config, s *settings) (*resource.Resource, error) {
	attrs := append(s.resource, semconv.ServiceName(s.serviceName))
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.ServiceVersion))
	}
	// Not resource.Default: it reads the process environment itself.
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(attrs...),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

// newOTLP builds the OTLP/HTTP exporter with every setting explicit. Its own
// HTTP client carries the TLS and proxy settings, which also keeps the
// exporter from reading certificate and proxy variables on its own.
func newOTLP(ctx context.Context, s *settings) (sdktrace.SpanExporter, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = s.proxy
	if s.tls != nil {
		tr.TLSClientConfig = s.tls
	}
	client := &http.Client{Transport: tr, Timeout: s.timeout}
	exp, err := otlptracehttp.New(ctx,
		otlptracehttp.WithEndpointURL(s.endpoint),
		otlptracehttp.WithHeaders(s.headers),
		otlptracehttp.WithTimeout(s.timeout),
		otlptracehttp.WithCompression(s.compression),
		otlptracehttp.WithEncoding(s.encoding),
		otlptracehttp.WithTLSClientConfig(nil),
		otlptracehttp.WithHTTPClient(client),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP exporter: %w", err)
	}
	return exp, nil
}
