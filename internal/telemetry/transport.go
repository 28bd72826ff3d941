package telemetry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the connector's spans.
const ScopeName = "github.com/d365portal/connector"

// NewTransport wraps next (nil: http.DefaultTransport) so each request is a
// client span named "METHOD /path/pattern" (see PathPattern:
// GET /api/data/v9.2/contacts({id})) with the method, server, path pattern,
// status and, on 429 and 503, Retry-After. The query is never recorded: an
// OData $filter holds email addresses. With p set, the request carries the
// span's traceparent; nil sends nothing. The span ends when the body is
// read to the end or closed.
//
// Put it under the retry layer (cmd passes it as the Dataverse client's
// transport) so each try is its own span under the operation's span, and
// have the retry layer call RecordRetry with its wait. With tracing off (see
// Off) next is returned as it is.
//
// otelhttp.NewTransport would also do, with
// otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
// return r.Method + " " + PathPattern(r.URL.Path) }); its url.full carries
// the query, which SanitizeExporter cuts, but this transport does not record
// it in the first place and adds no dependency.
func NewTransport(next http.RoundTripper, tp trace.TracerProvider, p propagation.TextMapPropagator) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	if Off(tp) {
		return next
	}
	return &transport{next: next, tracer: tp.Tracer(ScopeName), prop: p}
}

type transport struct {
	next   http.RoundTripper
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	pattern := PathPattern(req.URL.Path)
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(req.Method),
		semconv.URLPath(pattern),
		semconv.URLScheme(req.URL.Scheme),
		semconv.ServerAddress(req.URL.Hostname()),
	}
	if port, err := strconv.Atoi(req.URL.Port()); err == nil {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	ctx, span := t.tracer.Start(req.Context(), req.Method+" "+pattern,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	if t.prop != nil {
		// A RoundTripper must not change the caller's request.
		req = req.Clone(ctx)
		t.prop.Inject(ctx, propagation.HeaderCarrier(req.Header))
	} else {
		req = req.WithContext(ctx)
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
		span.SetStatus(codes.Error, "")
		span.End()
		return resp, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(resp.StatusCode)))
		span.SetStatus(codes.Error, "")
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if ra := resp.Header.Values("Retry-After"); len(ra) > 0 {
			span.SetAttributes(KeyRetryAfter.StringSlice(ra))
		}
	}
	if resp.Body == nil || resp.Body == http.NoBody || req.Method == http.MethodHead {
		span.End()
		return resp, nil
	}
	resp.Body = &spanBody{ReadCloser: resp.Body, span: span}
	return resp, nil
}

// errorType is a low-cardinality class for a transport error; the error's
// text (which may quote the URL) stays out of the span.
func errorType(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection_reset"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "unexpected_eof"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		return "_OTHER"
	}
}

// spanBody ends the span at the end of the body or at Close, whichever
// comes first, so the span covers reading the response.
type spanBody struct {
	io.ReadCloser
	span trace.Span
	once sync.Once
}

func (b *spanBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.end()
	} else if err != nil {
		b.span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
		b.span.SetStatus(codes.Error, "")
		b.end()
	}
	return n, err
}

func (b *spanBody) Close() error {
	b.end()
	return b.ReadCloser.Close()
}

func (b *spanBody) end() { b.once.Do(func() { b.span.End() }) }
