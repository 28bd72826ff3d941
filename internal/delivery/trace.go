package delivery

import (
	"context"
	"errors"
	"strconv"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/telemetry"
)

// smtpSpan is the client span of one SMTP submission (nil tracer: none).
// It carries the email activity's id, never the recipient, the subject or
// the body.
func (f *Follower) smtpSpan(ctx context.Context, a *Awaiting) (context.Context, trace.Span) {
	if f.tracer == nil {
		return ctx, trace.SpanFromContext(context.Background())
	}
	return f.tracer.Start(ctx, "SMTP send", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(telemetry.KeyChannel.String(ChannelSMTP), telemetry.KeyEmailID.String(a.EmailID)))
}

// endSMTP records how the server answered: accepted, temporary (tried
// again) or refused, with its reply code as error.type.
func endSMTP(span trace.Span, err error) {
	defer span.End()
	if !span.IsRecording() {
		return
	}
	if err == nil {
		span.SetAttributes(telemetry.KeyOutcome.String("accepted"))
		return
	}
	outcome := "refused"
	if IsTemporary(err) {
		outcome = "temporary"
	}
	class := "_OTHER"
	var se *SendError
	if errors.As(err, &se) && se.Code > 0 {
		class = strconv.Itoa(se.Code)
	}
	span.SetAttributes(telemetry.KeyOutcome.String(outcome), semconv.ErrorTypeKey.String(class))
	span.SetStatus(codes.Error, "")
}
