package portalweb

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/telemetry"
)

// traced is the site with one server span per request when tracing is on
// (otelhttp), the engine itself when it is off. The site is public, so a
// traceparent sent by a browser starts no trace of ours: the span is a new
// root linked to it. Span and route are named by the Gin route (see
// routeSpan), never by the raw path; the query, which may hold an
// invitation code, is dropped by the sanitizer like any attribute it does
// not allow.
func (s *Server) traced(tp trace.TracerProvider) http.Handler {
	if telemetry.Off(tp) {
		return s.engine
	}
	h := otelhttp.NewHandler(s.engine, "portal",
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()), // metrics are /metrics' job
		otelhttp.WithPropagators(telemetry.Propagator()),
		otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }),
		// Until routing names it, a span is named by its method alone.
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A mux in front (cmd mounts the site at "/") sets Pattern, and
		// otelhttp renames the span by it after the handler, over the route.
		if r.Pattern != "" {
			r2 := *r
			r2.Pattern = ""
			r = &r2
		}
		h.ServeHTTP(w, r)
	})
}

// routeSpan names the request's span "METHOD /route" (the Gin pattern,
// e.g. "GET /signin-oidc/:provider") with http.route, once Gin has routed
// it; unmatched requests keep the method alone.
func routeSpan(c *gin.Context) {
	if route := c.FullPath(); route != "" {
		span := trace.SpanFromContext(c.Request.Context())
		if span.IsRecording() {
			span.SetName(c.Request.Method + " " + route)
			span.SetAttributes(semconv.HTTPRoute(route))
		}
	}
	c.Next()
}
