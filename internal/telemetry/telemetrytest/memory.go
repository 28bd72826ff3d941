// Package telemetrytest gives tests and benchmarks of instrumented packages
// what they need to read the spans the connector exports: tracing on with
// the SDK's in-memory exporter (behind the sanitizer, as an operator would
// see it), an OTLP/HTTP receiver to run in the test or bench process, and
// checks that no span carries a given secret.
package telemetrytest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/telemetry"
)

// Memory is tracing on into the SDK's in-memory exporter.
type Memory struct {
	// Provider is what instrumented components get.
	Provider trace.TracerProvider
	mem      *tracetest.InMemoryExporter
}

// NewMemory turns tracing on as telemetry.New does, with the in-memory
// exporter in place of OTLP; the provider is shut down at the end of t.
func NewMemory(t testing.TB) *Memory {
	t.Helper()
	mem := tracetest.NewInMemoryExporter()
	tp, shutdown, err := telemetry.New(context.Background(), telemetry.Config{Enabled: true, Exporter: mem})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	return &Memory{Provider: tp, mem: mem}
}

// Spans flushes the spans ended so far and returns every span exported
// since the start (or the last Reset), as the sanitizer left them.
func (m *Memory) Spans(t testing.TB) tracetest.SpanStubs {
	t.Helper()
	if err := m.Provider.(*sdktrace.TracerProvider).ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m.mem.GetSpans()
}

// Reset forgets the spans exported so far.
func (m *Memory) Reset() { m.mem.Reset() }

// Text is everything of a span that leaves the process as text: its name,
// status description, attributes, and its events' and links' names and
// attributes, one "key=value" per line.
func Text(s tracetest.SpanStub) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name=%s\nstatus=%s\n", s.Name, s.Status.Description)
	writeAttrs(&b, "", s.Attributes)
	for _, e := range s.Events {
		fmt.Fprintf(&b, "event=%s\n", e.Name)
		writeAttrs(&b, "event.", e.Attributes)
	}
	for _, l := range s.Links {
		writeAttrs(&b, "link.", l.Attributes)
	}
	return b.String()
}

func writeAttrs(b *strings.Builder, prefix string, kvs []attribute.KeyValue) {
	for _, kv := range kvs {
		fmt.Fprintf(b, "%s%s=%s\n", prefix, kv.Key, kv.Value.Emit())
	}
}

// Attrs is the attributes of kvs by key.
func Attrs(kvs []attribute.KeyValue) map[string]attribute.Value {
	m := make(map[string]attribute.Value, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

// AssertNoSecret fails t for each span whose text (see Text) contains one
// of secrets (empty ones are skipped), naming the span but not the secret's
// position in it.
func AssertNoSecret(t testing.TB, spans tracetest.SpanStubs, secrets map[string]string) {
	t.Helper()
	for _, s := range spans {
		txt := Text(s)
		for what, secret := range secrets {
			if secret != "" && strings.Contains(txt, secret) {
				t.Errorf("span %q carries the %s:\n%s", s.Name, what, txt)
			}
		}
	}
}
