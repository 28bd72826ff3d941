package config

import (
	"net/url"
)

// Telemetry configures what the connector reports about itself beyond logs
// and /metrics.
type Telemetry struct {
	Traces Traces `yaml:"traces"`
}

// Traces configures OpenTelemetry traces (OTLP over HTTP). The standard
// OTEL_* environment variables fill in the rest (headers, sampler, service
// name, batch sizes); cmd/connector passes them to internal/telemetry.
type Traces struct {
	// Enabled turns tracing on. Default false: no spans, no exporter.
	Enabled bool `yaml:"enabled"`
	// Endpoint is the OTLP/HTTP receiver, e.g. http://otel-collector:4318
	// (/v1/traces is added when the URL has no path). Default: the
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT
	// variable, else http://localhost:4318/v1/traces.
	Endpoint string `yaml:"endpoint"`
}

// validateTelemetry checks telemetry.traces.endpoint: an http(s) URL with a
// host and no query (credentials go in OTEL_EXPORTER_OTLP_HEADERS, so the
// URL never carries them into logs). It is checked when tracing is off too,
// so a typo shows before someone turns it on.
func (c *Config) validateTelemetry(v *validator) {
	ep := c.Telemetry.Traces.Endpoint
	if ep == "" {
		return
	}
	u, err := url.Parse(ep)
	switch {
	case err != nil || u.Host == "" || !oneOf(u.Scheme, "http", "https"):
		v.add("telemetry.traces.endpoint", "must be an http:// or https:// URL, e.g. http://otel-collector:4318")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		v.add("telemetry.traces.endpoint", "must not carry credentials, a query or a fragment (put headers such as an API key in OTEL_EXPORTER_OTLP_HEADERS)")
	}
}
