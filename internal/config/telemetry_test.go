package config

import (
	"errors"
	"strings"
	"testing"
)

func TestTelemetryTraces(t *testing.T) {
	c, err := LoadBytes([]byte(minimal), Options{Getenv: dummyEnv})
	if err != nil {
		t.Fatal(err)
	}
	if c.Telemetry.Traces.Enabled || c.Telemetry.Traces.Endpoint != "" {
		t.Errorf("default traces %+v, want off with no endpoint", c.Telemetry.Traces)
	}
	src := minimal + "telemetry:\n  traces:\n    enabled: true\n    endpoint: http://otel-collector:4318\n"
	if c, err = LoadBytes([]byte(src), Options{Getenv: dummyEnv}); err != nil {
		t.Fatal(err)
	}
	if !c.Telemetry.Traces.Enabled || c.Telemetry.Traces.Endpoint != "http://otel-collector:4318" {
		t.Errorf("traces %+v", c.Telemetry.Traces)
	}
}

func TestTelemetryBadEndpoint(t *testing.T) {
	for _, c := range []struct{ endpoint, want string }{
		{"otel-collector:4318", "http:// or https://"},
		{"grpc://otel-collector:4317", "http:// or https://"},
		{"http:///v1/traces", "http:// or https://"},
		{"https://collector.example.com/v1/traces?api-key=abc", "OTEL_EXPORTER_OTLP_HEADERS"},
		{"https://user:pw@collector.example.com", "credentials"},
	} {
		src := minimal + "telemetry:\n  traces:\n    enabled: false\n    endpoint: \"" + c.endpoint + "\"\n"
		_, err := LoadBytes([]byte(src), Options{Getenv: dummyEnv})
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("%s: want *Error, got %v", c.endpoint, err)
		}
		if len(ce.Problems) != 1 {
			t.Fatalf("%s: got %d problems, want 1:\n%v", c.endpoint, len(ce.Problems), err)
		}
		p := ce.Problems[0]
		line := strings.Count(minimal, "\n") + 4 // the fourth line appended
		if p.Key != "telemetry.traces.endpoint" || p.Line != line || !strings.Contains(p.Message, c.want) {
			t.Errorf("%s: problem %+v, want telemetry.traces.endpoint at line %d saying %q", c.endpoint, p, line, c.want)
		}
		if strings.Contains(err.Error(), "pw@") || strings.Contains(err.Error(), "abc") {
			t.Errorf("%s: message quotes the secret: %v", c.endpoint, err)
		}
	}
}

func TestTelemetryEndpointRedacted(t *testing.T) {
	c, err := LoadBytes([]byte(minimal+"telemetry:\n  traces:\n    endpoint: http://collector:4318\n"), Options{Getenv: dummyEnv})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := c.Dump(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "endpoint: http://collector:4318") || !strings.Contains(b.String(), "enabled: false") {
		t.Errorf("dump lacks the traces block:\n%s", b.String())
	}
}
