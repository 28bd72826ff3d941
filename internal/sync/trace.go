package sync

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/telemetry"
)

// tracing is intake's part of one trace per invitation: the webhook's server
// span, the enqueue's producer span with the trace context in the stream
// entry, the worker's consumer span (one per attempt), and the follow-up of
// the invitation email, linked back to the invitation's trace. With tracing
// off every step is a context lookup, and nothing is read from or written
// to Redis for it.
type tracing struct {
	tr   trace.Tracer
	prop propagation.TextMapPropagator
	on   bool
}

func newTracing(tp trace.TracerProvider) tracing {
	if tp == nil {
		tp = telemetry.Nop()
	}
	return tracing{tr: tp.Tracer(telemetry.ScopeName), prop: telemetry.Propagator(), on: !telemetry.Off(tp)}
}

// traceTTL is how long the invitation's trace context is kept for its
// email's follow-up: longer than any pending_alert_after in practice.
const traceTTL = 7 * 24 * time.Hour

// noSpan is what the steps return with tracing off: ending it does
// nothing, unlike ending whatever span the caller's context holds.
var noSpan = trace.SpanFromContext(context.Background())

func (i *Intake) traceKey(contactID string) string {
	return i.cfg.KeyPrefix + "intake:trace:" + contactID
}

// serveWebhook is the webhook's server span around the handler. The span
// is named by the configured path, never the URL: the query holds the
// webhook key.
func (i *Intake) serveWebhook(w http.ResponseWriter, r *http.Request) {
	if !i.trace.on {
		i.handleWebhook(w, r)
		return
	}
	ctx, span := i.trace.tr.Start(r.Context(), r.Method+" "+i.cfg.Webhook.Path,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(append(telemetry.WebhookAttributes(r.Header),
			semconv.HTTPRequestMethodKey.String(r.Method), semconv.HTTPRoute(i.cfg.Webhook.Path))...))
	defer span.End()
	sw := &statusWriter{ResponseWriter: w}
	i.handleWebhook(sw, r.WithContext(ctx))
	status := sw.status
	if status == 0 {
		status = http.StatusOK
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	if sw.outcome != "" {
		span.SetAttributes(telemetry.KeyOutcome.String(sw.outcome))
	}
	if status >= 500 {
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
		span.SetStatus(codes.Error, "")
	}
}

// statusWriter keeps the status and the outcome the webhook answered.
type statusWriter struct {
	http.ResponseWriter
	status  int
	outcome string
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// enqueueSpan is the producer span of an enqueue and the trace context to
// keep in the stream entry (nil with no trace to continue).
func (i *Intake) enqueueSpan(ctx context.Context, r Request) (context.Context, trace.Span, map[string]string) {
	if !i.trace.on {
		return ctx, noSpan, nil
	}
	ctx, span := i.trace.tr.Start(ctx, "send "+i.keys.stream, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("redis"),
			semconv.MessagingOperationTypeKey.String("send"),
			semconv.MessagingDestinationNameKey.String(i.keys.stream),
			telemetry.KeySource.String(r.Source),
			telemetry.KeyKind.String(kindName(r.Kind)),
			telemetry.KeyContactID.String(r.ContactID),
			telemetry.KeyEmailID.String(r.EmailID),
		))
	carrier := map[string]string{}
	telemetry.Inject(ctx, i.trace.prop, carrier)
	return ctx, span, carrier
}

// processSpan is the worker's consumer span for one attempt at j: a child
// of the enqueue's span when the entry carries its trace context (retries
// and parked requests keep it), else the root of a trace of its own (the
// poller's requests).
func (i *Intake) processSpan(ctx context.Context, j *job, msgID string, claimed bool) (context.Context, trace.Span) {
	if !i.trace.on {
		return ctx, noSpan
	}
	if len(j.Trace) > 0 {
		ctx = telemetry.Extract(ctx, i.trace.prop, j.Trace)
	}
	return i.trace.tr.Start(ctx, "process "+i.keys.stream, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("redis"),
			semconv.MessagingOperationTypeKey.String("process"),
			semconv.MessagingDestinationNameKey.String(i.keys.stream),
			semconv.MessagingConsumerGroupNameKey.String(groupName),
			semconv.MessagingMessageIDKey.String(msgID),
			telemetry.KeyAttempt.Int(j.Attempts+1),
			telemetry.KeySource.String(j.Source),
			telemetry.KeyKind.String(kindName(j.Kind)),
			telemetry.KeyContactID.String(j.ContactID),
			telemetry.KeyEmailID.String(j.EmailID),
			attribute.Bool("connector.reclaimed", claimed),
		))
}

// endProcess records the attempt's outcome on its span and ends it.
func endProcess(span trace.Span, outcome string, err error) {
	defer span.End()
	if !span.IsRecording() {
		return
	}
	if err == nil {
		span.SetAttributes(telemetry.KeyOutcome.String(outcome))
		return
	}
	span.SetAttributes(semconv.ErrorTypeKey.String(errClass(err)))
	span.SetStatus(codes.Error, "")
}

// errClass is a low-cardinality class of a worker error; its text (which
// can quote an email address or a Dataverse message) stays in the logs.
func errClass(err error) string {
	var de *dataverse.Error
	switch {
	case errors.As(err, new(*parkedError)):
		return "parked"
	case errors.As(err, &de):
		return strconv.Itoa(de.StatusCode)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case isPermanent(err):
		return "permanent"
	default:
		return "_OTHER"
	}
}

// rememberInvitationTrace keeps the trace context of the invitation just
// sent with its contact, so the email's outcome, recorded later by another
// message (its own trace), links back to it.
func (i *Intake) rememberInvitationTrace(ctx context.Context, contactID string) {
	if !i.trace.on || !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	carrier := map[string]string{}
	telemetry.Inject(ctx, i.trace.prop, carrier)
	if tp := carrier["traceparent"]; tp != "" {
		if err := i.rdb.Set(ctx, i.traceKey(contactID), tp, traceTTL).Err(); err != nil {
			i.log.DebugContext(ctx, "keeping the invitation's trace context failed", "err", err)
		}
	}
}

// followSpan is the span of following a contact's invitation email,
// linked to the trace of the invitation that sent it when that is known.
func (i *Intake) followSpan(ctx context.Context, contactID string) (context.Context, trace.Span) {
	if !i.trace.on {
		return ctx, noSpan
	}
	opts := []trace.SpanStartOption{trace.WithAttributes(telemetry.KeyContactID.String(contactID))}
	if tp, err := i.rdb.Get(ctx, i.traceKey(contactID)).Result(); err == nil {
		linked := telemetry.Extract(context.Background(), i.trace.prop, map[string]string{"traceparent": tp})
		if sc := trace.SpanContextFromContext(linked); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
	}
	return i.trace.tr.Start(ctx, "follow invitation email", opts...)
}

// endFollow records the email's outcome; once it is final the invitation's
// trace context is no longer needed.
func (i *Intake) endFollow(ctx context.Context, span trace.Span, contactID, emailID, outcome string, err error) {
	defer span.End()
	if !span.IsRecording() {
		return
	}
	if err != nil {
		span.SetAttributes(semconv.ErrorTypeKey.String(errClass(err)))
		span.SetStatus(codes.Error, "")
		return
	}
	span.SetAttributes(telemetry.KeyOutcome.String(outcome), telemetry.KeyEmailID.String(emailID))
	if outcome == OutcomeDelivered || outcome == OutcomeUndelivered {
		_ = i.rdb.Del(context.WithoutCancel(ctx), i.traceKey(contactID)).Err()
	}
}

func kindName(k string) string {
	if k == KindInvite {
		return "invite"
	}
	return k
}
