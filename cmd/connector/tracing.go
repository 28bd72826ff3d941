package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/config"
	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/telemetry"
)

// traceFlushTimeout bounds the flush of traces at shutdown: an endpoint
// that is down must not hold the exit up.
const traceFlushTimeout = 5 * time.Second

// newTracing turns tracing on from telemetry.traces and the OTEL_*
// variables (read through e.Getenv, never os.Getenv directly). Off, it
// returns a provider that does nothing and costs nothing. The stop
// function runs once; later calls return the first call's error.
func newTracing(ctx context.Context, c *config.Config, e env, log *slog.Logger) (trace.TracerProvider, func(context.Context) error, error) {
	tp, stop, err := telemetry.New(ctx, telemetry.Config{
		Enabled: c.Telemetry.Traces.Enabled, Endpoint: c.Telemetry.Traces.Endpoint,
		ServiceVersion: readBuildInfo().Version, Getenv: e.Getenv, Logger: log.With("component", "telemetry"),
	})
	if err != nil {
		return nil, nil, err
	}
	var once sync.Once
	var stopErr error
	return tp, func(ctx context.Context) error {
		once.Do(func() { stopErr = stop(ctx) })
		return stopErr
	}, nil
}

// flushTracing stops tracing, sending what is still queued within
// traceFlushTimeout; it is safe to call after the app's own shutdown did.
func flushTracing(log *slog.Logger, stop func(context.Context) error) {
	if stop == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), traceFlushTimeout)
	defer cancel()
	if err := stop(ctx); err != nil {
		log.Warn("traces not all sent at shutdown", "err", err)
	}
}

// traceDataverse makes each Dataverse request (each try) made within a
// traced operation a client span, and records the retry waits on the
// caller's span. Requests outside any trace (poll cycles, readiness
// probes, the reminder schedule, webhook registration) go untraced rather
// than each becoming a trace of one span. The credential keeps the
// untraced client: token requests are not part of an invitation's story.
func traceDataverse(hc *http.Client, hooks *dataverse.Hooks, tp trace.TracerProvider) *http.Client {
	if telemetry.Off(tp) {
		return hc
	}
	plain := hc.Transport
	if plain == nil {
		plain = http.DefaultTransport
	}
	traced := *hc
	traced.Transport = withinTrace{traced: telemetry.NewTransport(plain, tp, telemetry.Propagator()), plain: plain}
	hooks.OnWait = func(ctx context.Context, ri dataverse.RequestInfo, wait time.Duration) {
		telemetry.RecordRetry(ctx, ri.Attempt, wait, ri.StatusCode)
	}
	return &traced
}

// withinTrace sends a request through the tracing transport only when its
// context carries a span.
type withinTrace struct{ traced, plain http.RoundTripper }

func (w withinTrace) RoundTrip(r *http.Request) (*http.Response, error) {
	if trace.SpanContextFromContext(r.Context()).IsValid() {
		return w.traced.RoundTrip(r)
	}
	return w.plain.RoundTrip(r)
}

// traceAPI gives each JSON API request a server span named by its route
// pattern (never the path). Callers hold an API key, so a
// traceparent they send is continued: an invitation created through the
// API joins the caller's trace.
func traceAPI(h http.Handler, tp trace.TracerProvider) http.Handler {
	if telemetry.Off(tp) {
		return h
	}
	return otelhttp.NewHandler(h, "api",
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithPropagators(telemetry.Propagator()),
		// Named once the API's own mux has matched ("GET /api/v1/schedule"),
		// else by the outer mount ("GET /api/v1/").
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			switch {
			case r.Pattern == "":
				return r.Method
			case strings.Contains(r.Pattern, " "):
				return r.Pattern
			default:
				return r.Method + " " + r.Pattern
			}
		}),
	)
}
