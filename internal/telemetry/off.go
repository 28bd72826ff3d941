package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"
)

// offProvider is the provider when tracing is off. Unlike the SDK's no-op
// provider, its Start gives the caller's context back instead of wrapping it
// in a new one, so a span costs no allocation: one context lookup, and End
// does nothing.
type offProvider struct{ embedded.TracerProvider }

func (offProvider) Tracer(string, ...trace.TracerOption) trace.Tracer { return offTracer{} }

type offTracer struct{ embedded.Tracer }

func (offTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	// The span in ctx, or the API's no-op span when there is none, is not
	// recording: handing it back makes End and SetAttributes no-ops and keeps
	// any remote parent's context for Inject. A recording span (from some
	// other provider) must not be handed back, or the callee would end its
	// caller's span: that rare case gets the no-op tracer's wrapper.
	if s := trace.SpanFromContext(ctx); !s.IsRecording() {
		return ctx, s
	}
	return noop.Tracer{}.Start(ctx, name, opts...)
}

// Off reports whether tp is the provider New returns with tracing off (or
// the SDK's no-op provider), for callers that skip wiring when it is.
func Off(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case nil, offProvider, noop.TracerProvider:
		return true
	}
	return false
}

// Nop returns the provider New returns with tracing off, for components
// given no provider.
func Nop() trace.TracerProvider { return offProvider{} }
