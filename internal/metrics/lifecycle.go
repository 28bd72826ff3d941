package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/d365portal/connector/internal/lifecycle"
)

// lifecycleMetrics counts the reminder and expiry scheduler's actions.
type lifecycleMetrics struct {
	reminders *prometheus.CounterVec
	expiries  *prometheus.CounterVec
}

// Lifecycle returns the lifecycle.Metrics of m: reminders by portal,
// reminder index (its position in portals[].invitation.reminders) and
// outcome, and expiries by portal and outcome. Failures count attempts (a
// failing action is retried once per lease). Call it once per Metrics.
func (m *Metrics) Lifecycle() lifecycle.Metrics {
	lm := &lifecycleMetrics{
		reminders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "invitation_reminders_total",
			Help: "Reminder emails for open invitations, by portal, reminder index and outcome (sent, failed: an attempt that failed and is retried after the lease).",
		}, []string{"portal", "reminder", "outcome"}),
		expiries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "invitation_expiries_total",
			Help: "Invitations that expired unredeemed and were handled (contact set Expired), by portal and outcome (expired, failed: an attempt).",
		}, []string{"portal", "outcome"}),
	}
	m.reg.MustRegister(lm.reminders, lm.expiries)
	return lm
}

func (lm *lifecycleMetrics) ReminderSent(portal string, index int) {
	lm.reminders.WithLabelValues(portal, strconv.Itoa(index), "sent").Inc()
}

func (lm *lifecycleMetrics) ReminderFailed(portal string, index int) {
	lm.reminders.WithLabelValues(portal, strconv.Itoa(index), "failed").Inc()
}

func (lm *lifecycleMetrics) InvitationExpired(portal string) {
	lm.expiries.WithLabelValues(portal, "expired").Inc()
}

func (lm *lifecycleMetrics) ExpiryFailed(portal string) {
	lm.expiries.WithLabelValues(portal, "failed").Inc()
}
