package telemetry

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Inject writes the trace context of ctx into fields, the fields of a Redis
// Stream entry, under the propagator's keys (traceparent and tracestate for
// W3C trace context). With tracing off, or no span in ctx, it writes
// nothing. The queue's own field names must not be these keys.
func Inject(ctx context.Context, p propagation.TextMapPropagator, fields map[string]string) {
	p.Inject(ctx, propagation.MapCarrier(fields))
}

// Extract returns ctx with the remote span context carried in fields, so a
// span started from it is a child of the span that enqueued the entry: one
// trace from the webhook request through the queue. Fields with no or a
// malformed traceparent give ctx back unchanged, and the worker's span
// starts a trace of its own.
func Extract(ctx context.Context, p propagation.TextMapPropagator, fields map[string]string) context.Context {
	return p.Extract(ctx, propagation.MapCarrier(fields))
}

// CorrelationHeader is the header Dataverse puts on webhook requests with
// its platform correlation id.
const CorrelationHeader = "x-ms-correlation-request-id"

var identPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)

// WebhookAttributes are the attributes of a Dataverse webhook request that
// tie its span to Dataverse's side: the correlation id
// (x-ms-correlation-request-id), the table (x-ms-dynamics-entity-name) and
// the message (x-ms-dynamics-request-name). Dataverse sends no trace
// context, so there is no span to link to; the correlation id as an
// attribute is what finds the trace from a Dataverse system job or support
// case. Header values are request input: each is kept only if it has the
// form Dataverse uses (a GUID, an identifier).
func WebhookAttributes(h http.Header) []attribute.KeyValue {
	var out []attribute.KeyValue
	if v := strings.TrimSpace(h.Get(CorrelationHeader)); guidPattern.MatchString(v) {
		out = append(out, KeyCorrelationID.String(strings.ToLower(strings.Trim(v, "{}"))))
	}
	if v := strings.TrimSpace(h.Get("x-ms-dynamics-entity-name")); identPattern.MatchString(v) {
		out = append(out, KeyEntity.String(v))
	}
	if v := strings.TrimSpace(h.Get("x-ms-dynamics-request-name")); identPattern.MatchString(v) {
		out = append(out, KeyMessage.String(v))
	}
	return out
}

// RecordRetry notes on the span in ctx that a call is about to be tried
// again after wait: attempt is the try that failed (1 for the first),
// status its HTTP status (0 for a transport error). A 429 or 503 wait is a
// Dataverse throttling wait. It costs nothing when the span is not
// recording.
func RecordRetry(ctx context.Context, attempt int, wait time.Duration, status int) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestResendCount(attempt),
		KeyRetryWaitMS.Int64(wait.Milliseconds()),
	}
	if status > 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(status))
	}
	span.AddEvent("retry", trace.WithAttributes(attrs...))
}
