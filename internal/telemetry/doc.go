// Package telemetry sets OpenTelemetry tracing up from plain values and
// gives the pipeline what it needs to take part in one trace per invitation:
// the webhook request, the queue, the worker, each Dataverse request and the
// email outcome.
//
// # Setup
//
// New takes telemetry.traces.enabled (default false) and
// telemetry.traces.endpoint, and the standard variables through the getenv
// the command passes in (this package never reads the process environment):
//
//   - OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn tracing off
//     even when enabled; another exporter than otlp is an error.
//   - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (as is) or OTEL_EXPORTER_OTLP_ENDPOINT
//     (plus /v1/traces) when telemetry.traces.endpoint is empty.
//   - OTEL_EXPORTER_OTLP[_TRACES]_HEADERS, _TIMEOUT, _COMPRESSION (gzip),
//     _PROTOCOL (http/protobuf or http/json; grpc is an error, not a silent
//     fallback), _CERTIFICATE, _CLIENT_CERTIFICATE and _CLIENT_KEY.
//   - OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
//   - OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_EXPORT_TIMEOUT, OTEL_BSP_MAX_QUEUE_SIZE,
//     OTEL_BSP_MAX_EXPORT_BATCH_SIZE, and the OTEL_SPAN_*, OTEL_EVENT_* and
//     OTEL_LINK_* limits.
//   - HTTPS_PROXY, HTTP_PROXY and NO_PROXY for the exporter's requests.
//
// OTEL_PROPAGATORS is not read: Propagator is W3C trace context, always.
//
// Off, New returns a provider that does nothing: no goroutine, no exporter,
// and a span start and end cost a context lookup and no allocation (see
// BenchmarkOffOverhead). Build options once and set attributes only when
// span.IsRecording(), or the call site allocates them anyway.
//
// On, spans go through a bounded queue to OTLP over HTTP. An endpoint that
// is down or slow drops spans rather than holding requests up: the queue
// refuses spans once full, a failed batch is counted and let go, and a
// warning through slog says how many were dropped, at most once per
// WarnEvery (and once more at shutdown). See BenchmarkSpanEndpoint.
//
// # What may reach a span
//
// Every span passes SanitizeExporter before it leaves the process: only
// attribute keys on the allow-list (DefaultRules) are kept, each value must
// fit its Rule (a GUID, a short name, a number, a path pattern), span and
// event names lose query strings and keys, and status descriptions are
// dropped. Invitation codes, tokens, passwords, email addresses and email
// bodies therefore never leave, even if an instrumented library records
// them. Tests that use the SDK's in-memory exporter pass it as
// Config.Exporter, so they see what an operator would, and call the
// shutdown function (or ForceFlush on the *sdktrace.TracerProvider that New
// returns when tracing is on) before reading it.
//
// # Using it in the pipeline
//
//   - Webhook (internal/sync): the server span carries WebhookAttributes;
//     the enqueue's producer span Injects its context into the stream
//     entry (the job keeps it through retries and parking).
//   - Worker: ctx = Extract(ctx, p, fields), then a consumer span per
//     attempt (KeyAttempt): a child of the enqueue's span.
//   - Dataverse: cmd wraps the client's transport with NewTransport, under
//     the retry layer, whose dataverse.Hooks.OnWait calls RecordRetry
//     before each wait.
//   - Email outcome: the worker keeps the invitation's traceparent in
//     Redis by contact; the follow-up, a trace of its own, links to it.
//   - Portal: one server span per request (otelhttp), named by its Gin
//     route.
//
// Tests and the bench program read spans through telemetrytest: tracing
// into the in-memory exporter as exported, and an OTLP/HTTP receiver.
package telemetry
