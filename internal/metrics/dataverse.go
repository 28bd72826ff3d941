package metrics

import (
	"strconv"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
)

// DataverseHooks returns callbacks for dataverse.Options.Hooks that record
// every attempt (count by operation and status, duration by operation),
// every retry and every throttle with its Retry-After. The entity set is not
// a label: operation keeps the series count small and fixed.
func (m *Metrics) DataverseHooks() dataverse.Hooks {
	return dataverse.Hooks{
		OnRequest: func(ri dataverse.RequestInfo) {
			op := operation(ri.Operation)
			m.dvRequests.WithLabelValues(op, statusLabel(ri.StatusCode)).Inc()
			m.dvDuration.WithLabelValues(op).Observe(ri.Duration.Seconds())
		},
		OnRetry: func(ri dataverse.RequestInfo, _ time.Duration) {
			m.dvRetries.WithLabelValues(operation(ri.Operation)).Inc()
		},
		OnThrottle: func(ri dataverse.RequestInfo, retryAfter time.Duration) {
			op := operation(ri.Operation)
			m.dvThrottles.WithLabelValues(op).Inc()
			m.dvThrottleWait.WithLabelValues(op).Add(retryAfter.Seconds())
		},
	}
}

func operation(op string) string {
	if op == "" {
		return "unknown"
	}
	return op
}

// statusLabel is the HTTP status as text, or "error" when no response arrived
// (connection refused or reset, timeout).
func statusLabel(code int) string {
	if code <= 0 {
		return "error"
	}
	return strconv.Itoa(code)
}
