// Package metrics exposes the connector's Prometheus metrics: invitations by
// portal, the intake queue, Dataverse calls (requests, throttles, retries,
// latency), HTTP latency by route, and the Go runtime and process collectors.
//
// Everything lives on one Registry owned by a Metrics value, never on the
// client library's global registry, so tests and several instances in one
// process do not collide. cmd/connector creates one Metrics, hands its
// callbacks to the packages that produce events (DataverseHooks, IntakeHooks,
// Middleware, ObserveInvite and the Invitation* methods), registers the queue
// with RegisterQueue, and mounts Handler at /metrics.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "connector"

// Latency buckets in seconds. Dataverse calls and API requests that reach
// Dataverse take tens of milliseconds to seconds; throttled calls much longer.
var durationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Metrics holds the registry and every series the connector records. The zero
// value is not usable; call New. All methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	invitationsCreated *prometheus.CounterVec
	invitationsSent    *prometheus.CounterVec
	invitationsFailed  *prometheus.CounterVec
	redemptions        *prometheus.CounterVec

	dvRequests     *prometheus.CounterVec
	dvDuration     *prometheus.HistogramVec
	dvThrottles    *prometheus.CounterVec
	dvThrottleWait *prometheus.CounterVec
	dvRetries      *prometheus.CounterVec

	httpDuration *prometheus.HistogramVec
	httpInFlight prometheus.Gauge
}

// New creates the registry with the connector's series plus the Go runtime
// and process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) prometheus.Collector { reg.MustRegister(c); return c }
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return f(prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: name, Help: help,
		}, labels)).(*prometheus.CounterVec)
	}
	m := &Metrics{
		reg: reg,

		invitationsCreated: counter("invitations_created_total",
			"Invitations (adx_invitation rows) created, by portal.", "portal"),
		invitationsSent: counter("invitations_sent_total",
			"Invitation emails sent, by portal.", "portal"),
		invitationsFailed: counter("invitations_failed_total",
			"Invitation requests that failed, by portal.", "portal"),
		redemptions: counter("redemptions_total",
			"Invitations redeemed into a portal account, by portal.", "portal"),

		dvRequests: counter("dataverse_requests_total",
			"Dataverse Web API attempts by operation and HTTP status (\"error\" when no response arrived).",
			"operation", "status"),
		dvThrottles: counter("dataverse_throttles_total",
			"Dataverse service-protection rejections (429), by operation.", "operation"),
		dvThrottleWait: counter("dataverse_throttle_wait_seconds_total",
			"Sum of the Retry-After delays Dataverse asked for, by operation.", "operation"),
		dvRetries: counter("dataverse_retries_total",
			"Dataverse attempts that were retried, by operation.", "operation"),
		dvDuration: f(prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "dataverse_request_duration_seconds",
			Help:    "Duration of one Dataverse Web API attempt, by operation.",
			Buckets: durationBuckets,
		}, []string{"operation"})).(*prometheus.HistogramVec),

		httpDuration: f(prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "Duration of inbound HTTP requests by route pattern, method and status.",
			Buckets: durationBuckets,
		}, []string{"route", "method", "status"})).(*prometheus.HistogramVec),
		httpInFlight: f(prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "http_requests_in_flight",
			Help: "Inbound HTTP requests being served.",
		})).(prometheus.Gauge),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry returns the registry, for tests and for registering extra
// collectors next to the connector's own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text or OpenMetrics format.
// A failing collector does not fail the scrape: the other series are still
// served and promhttp_metric_handler_errors_total counts the failure.
func (m *Metrics) Handler() http.Handler {
	return promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          m.reg,
		EnableOpenMetrics: true,
		// A scrape must not pile up collector calls (the queue collector
		// talks to Redis) when scrapes come faster than they finish.
		MaxRequestsInFlight: 4,
	}))
}

// InvitationCreated counts an adx_invitation row created for portal.
func (m *Metrics) InvitationCreated(portal string) {
	m.invitationsCreated.WithLabelValues(portal).Inc()
}

// InvitationSent counts an invitation email sent for portal.
func (m *Metrics) InvitationSent(portal string) { m.invitationsSent.WithLabelValues(portal).Inc() }

// InvitationFailed counts an invitation request for portal that failed.
func (m *Metrics) InvitationFailed(portal string) {
	m.invitationsFailed.WithLabelValues(portal).Inc()
}

// Redeemed counts an invitation for portal redeemed into an account.
func (m *Metrics) Redeemed(portal string) { m.redemptions.WithLabelValues(portal).Inc() }

// InitPortals creates the per-portal series at zero for the configured
// portals, so rate() and absent() queries work before the first event.
func (m *Metrics) InitPortals(names ...string) {
	for _, n := range names {
		m.invitationsCreated.WithLabelValues(n)
		m.invitationsSent.WithLabelValues(n)
		m.invitationsFailed.WithLabelValues(n)
		m.redemptions.WithLabelValues(n)
	}
}
