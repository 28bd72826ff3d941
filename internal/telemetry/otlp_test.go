package telemetry

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Spans reach an OTLP/HTTP receiver with the service name and resource
// attributes from the environment, the configured headers, gzip, the
// parent/child relation, the allowed attributes and none of the others.
func TestOTLPReceiverGetsSpans(t *testing.T) {
	rcv := startReceiver(t, false)
	tp, shutdown, err := New(context.Background(), Config{
		Enabled:        true,
		Endpoint:       rcv.srv.URL,
		ServiceName:    "connector",
		ServiceVersion: "1.2.3",
		Getenv: envMap{
			"OTEL_SERVICE_NAME":              "invites",
			"OTEL_RESOURCE_ATTRIBUTES":       "deployment.environment.name=test,service.namespace=crm%20sync,service.name=ignored",
			"OTEL_EXPORTER_OTLP_HEADERS":     "x-api-key=s3cret%3D%3D",
			"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
		}.get,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(CorrelationHeader, "9a3f0c2e-5b7d-4e1a-8c6b-0d2e4f6a8b1c")
	h.Set("x-ms-dynamics-entity-name", "contact")
	tracer := tp.Tracer(ScopeName)
	ctx, hook := tracer.Start(context.Background(), "POST /hooks/dataverse",
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(WebhookAttributes(h)...))
	hook.SetAttributes(semconv.HTTPResponseStatusCode(202), attribute.String("invite.code", "AB12CD34"))
	fields := map[string]string{}
	Inject(ctx, Propagator(), fields)
	hook.End()
	_, work := tracer.Start(Extract(context.Background(), Propagator(), fields), "invite.process",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(KeyContactID.String("6f1c3e1a-28a4-4f0e-9a55-2d3c1e0f7b10"), KeyOutcome.String("invited")))
	work.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	spans := rcv.spans()
	if len(spans) != 2 {
		t.Fatalf("receiver got %d spans, want 2", len(spans))
	}
	rcv.mu.Lock()
	hdr, path := rcv.headers[0], rcv.paths[0]
	rcv.mu.Unlock()
	if path != "/v1/traces" {
		t.Errorf("POST to %s, want /v1/traces", path)
	}
	if hdr.Get("x-api-key") != "s3cret==" || hdr.Get("Content-Encoding") != "gzip" || hdr.Get("Content-Type") != "application/x-protobuf" {
		t.Errorf("request headers %v: want x-api-key, gzip and protobuf", hdr)
	}
	byName := map[string]*tracepb.Span{}
	for _, s := range spans {
		byName[s.span.GetName()] = s.span
		for k, want := range map[string]string{
			"service.name":                "invites",
			"service.version":             "1.2.3",
			"service.namespace":           "crm sync",
			"deployment.environment.name": "test",
			"telemetry.sdk.language":      "go",
		} {
			if got := s.resource[k]; got != want {
				t.Errorf("resource %s = %q, want %q", k, got, want)
			}
		}
		if s.scope != ScopeName {
			t.Errorf("scope %q, want %q", s.scope, ScopeName)
		}
	}
	hs, ws := byName["POST /hooks/dataverse"], byName["invite.process"]
	if hs == nil || ws == nil {
		t.Fatalf("spans %v, want the webhook's and the worker's", byName)
	}
	if hex.EncodeToString(ws.GetTraceId()) != hex.EncodeToString(hs.GetTraceId()) ||
		hex.EncodeToString(ws.GetParentSpanId()) != hex.EncodeToString(hs.GetSpanId()) {
		t.Errorf("worker span not the webhook span's child: trace %x/%x parent %x/%x",
			ws.GetTraceId(), hs.GetTraceId(), ws.GetParentSpanId(), hs.GetSpanId())
	}
	ha := kvMap(hs.GetAttributes())
	if ha["dataverse.correlation_request_id"] != "9a3f0c2e-5b7d-4e1a-8c6b-0d2e4f6a8b1c" || ha["dataverse.entity"] != "contact" || ha["http.response.status_code"] != "202" {
		t.Errorf("webhook span attributes %v", ha)
	}
	if _, ok := ha["invite.code"]; ok {
		t.Errorf("invite.code reached the receiver: %v", ha)
	}
	wa := kvMap(ws.GetAttributes())
	if wa["connector.contact.id"] != "6f1c3e1a-28a4-4f0e-9a55-2d3c1e0f7b10" || wa["connector.outcome"] != "invited" {
		t.Errorf("worker span attributes %v", wa)
	}
	if hs.GetKind() != tracepb.Span_SPAN_KIND_SERVER || ws.GetKind() != tracepb.Span_SPAN_KIND_CONSUMER {
		t.Errorf("kinds %v/%v, want server/consumer", hs.GetKind(), ws.GetKind())
	}
}

// With no telemetry.traces.endpoint, OTEL_EXPORTER_OTLP_ENDPOINT is a base
// URL: spans go to its path plus /v1/traces.
func TestOTLPEndpointFromEnv(t *testing.T) {
	rcv := startReceiver(t, false)
	tp, shutdown, err := New(context.Background(), Config{
		Enabled: true,
		Getenv:  envMap{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.srv.URL + "/otlp"}.get,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("test").Start(context.Background(), "x")
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.paths) != 1 || rcv.paths[0] != "/otlp/v1/traces" {
		t.Errorf("requests to %v, want one to /otlp/v1/traces", rcv.paths)
	}
}

// A receiver that is down: every span is counted as dropped, the warning
// comes once with the count, the next one not before a minute has passed
// (by the clock New was given), and then with the count since.
func TestReceiverDownWarnsOncePerMinute(t *testing.T) {
	logs := &logRecorder{}
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	tp, shutdown, err := New(context.Background(), Config{
		Enabled:  true,
		Endpoint: "http://" + closedAddr(t),
		Logger:   slog.New(logs),
		now:      clk.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	tracer := tp.Tracer("test")
	spans := func(n int) {
		for range n {
			_, s := tracer.Start(context.Background(), "x")
			s.End()
		}
	}

	spans(50)
	forceFlush(t, tp)
	w := logs.warnings()
	if len(w) != 1 {
		t.Fatalf("%d warnings after the first failed export, want 1", len(w))
	}
	if w[0]["dropped"].Int64() != 50 || w[0]["export_failed"].Int64() != 50 || w[0]["error"].String() == "" {
		t.Errorf("first warning %v, want 50 dropped by a failed export, with its error", w[0])
	}

	spans(30)
	forceFlush(t, tp)
	clk.add(59 * time.Second)
	spans(5)
	forceFlush(t, tp)
	if n := len(logs.warnings()); n != 1 {
		t.Fatalf("%d warnings within the minute, want 1", n)
	}

	clk.add(2 * time.Second)
	spans(1)
	forceFlush(t, tp)
	w = logs.warnings()
	if len(w) != 2 {
		t.Fatalf("%d warnings after a minute, want 2", len(w))
	}
	if w[1]["dropped"].Int64() != 36 || w[1]["since_last_warning"].String() != "1m1s" {
		t.Errorf("second warning %v, want the 36 dropped since, 1m1s after the first", w[1])
	}

	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(logs.warnings()); n != 2 {
		t.Errorf("%d warnings after shutdown with nothing left, want 2", n)
	}
}

// A receiver that takes the request and does not answer: ending spans does
// not wait for it; the queue holds at most OTEL_BSP_MAX_QUEUE_SIZE spans and
// refuses the rest, counted. When it answers, the held spans arrive and one
// warning gives the count.
func TestReceiverHangingBoundsTheQueue(t *testing.T) {
	rcv := startReceiver(t, true)
	logs := &logRecorder{}
	tp, shutdown, err := New(context.Background(), Config{
		Enabled:  true,
		Endpoint: rcv.srv.URL,
		Logger:   slog.New(logs),
		Getenv: envMap{
			"OTEL_BSP_MAX_QUEUE_SIZE":        "8",
			"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4",
			// Long enough that nothing times out while the test holds the
			// receiver: the gate alone decides what is dropped.
			"OTEL_BSP_EXPORT_TIMEOUT":    "600000",
			"OTEL_EXPORTER_OTLP_TIMEOUT": "600000",
		}.get,
	})
	if err != nil {
		t.Fatal(err)
	}
	tracer := tp.Tracer("test")
	for range 100 {
		_, s := tracer.Start(context.Background(), "x")
		s.End()
	}
	<-rcv.arrived // the first batch is at the receiver, unanswered
	if n := len(logs.warnings()); n != 0 {
		t.Fatalf("%d warnings while the export is still pending, want 0", n)
	}
	rcv.release()
	forceFlush(t, tp)

	if got := len(rcv.spans()); got != 8 {
		t.Errorf("receiver got %d spans, want the 8 the queue held", got)
	}
	w := logs.warnings()
	if len(w) != 1 {
		t.Fatalf("%d warnings, want 1", len(w))
	}
	if w[0]["dropped"].Int64() != 92 || w[0]["queue_full"].Int64() != 92 || w[0]["export_failed"].Int64() != 0 {
		t.Errorf("warning %v, want 92 refused by the full queue", w[0])
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Shutdown says what it could not send, even within the minute.
func TestShutdownReportsUnsent(t *testing.T) {
	rcv := startReceiver(t, true)
	logs := &logRecorder{}
	tp, shutdown, err := New(context.Background(), Config{
		Enabled:  true,
		Endpoint: rcv.srv.URL,
		Logger:   slog.New(logs),
		Getenv:   envMap{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "3", "OTEL_EXPORTER_OTLP_TIMEOUT": "600000", "OTEL_BSP_EXPORT_TIMEOUT": "600000"}.get,
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		_, s := tp.Tracer("test").Start(context.Background(), "x")
		s.End()
	}
	<-rcv.arrived
	// The receiver does not answer before the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := shutdown(ctx); err == nil {
		t.Error("shutdown with a canceled context and a pending export returned nil")
	}
	w := logs.warnings()
	if len(w) != 1 || w[0]["unsent_at_shutdown"].Int64() != 5 {
		t.Errorf("warnings %v, want one with 5 unsent at shutdown", w)
	}
}

// An https endpoint is trusted through OTEL_EXPORTER_OTLP_CERTIFICATE;
// without it the receiver's certificate is refused and the spans are
// counted as dropped.
func TestOTLPOverTLS(t *testing.T) {
	rcv := startTLSReceiver(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rcv.srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		env     envMap
		arrived int
	}{
		{"with the CA", envMap{"OTEL_EXPORTER_OTLP_CERTIFICATE": ca}, 1},
		{"system roots", nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			logs := &logRecorder{}
			before := len(rcv.spans())
			tp, shutdown, err := New(context.Background(), Config{
				Enabled: true, Endpoint: rcv.srv.URL, Getenv: c.env.get, Logger: slog.New(logs),
			})
			if err != nil {
				t.Fatal(err)
			}
			_, s := tp.Tracer("test").Start(context.Background(), "x")
			s.End()
			if err := shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := len(rcv.spans()) - before; got != c.arrived {
				t.Errorf("%d spans arrived, want %d", got, c.arrived)
			}
			if w := logs.warnings(); len(w) != 1-c.arrived {
				t.Errorf("warnings %v, want %d", w, 1-c.arrived)
			}
		})
	}
}
