package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/d365portal/connector/internal/delivery"
)

// DeliveryHooks returns callbacks for delivery.Follower that count
// invitation emails by channel and outcome (delivered, failed, stuck) and
// observe the time from handing an email over (the contact shows Sent) to
// the mail server accepting it (Delivered). Call it once per Metrics.
func (m *Metrics) DeliveryHooks() delivery.Hooks {
	outcomes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "invitation_emails_total",
		Help: "Invitation email outcomes recorded on contacts, by channel (dataverse, smtp) and outcome (delivered; failed: Dataverse set Failed or the SMTP server refused; stuck: still not sent after pending_alert_after).",
	}, []string{"channel", "outcome"})
	handed := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "invitation_email_delivery_seconds",
		Help: "Time from handing an invitation email over to the mail server accepting it, by channel.",
		// Server-side sync runs every 2 to 12 minutes per mailbox; SMTP takes seconds.
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200},
	}, []string{"channel"})
	m.reg.MustRegister(outcomes, handed)
	for _, ch := range []string{delivery.ChannelDataverse, delivery.ChannelSMTP} {
		for _, o := range []string{delivery.OutcomeDelivered, delivery.OutcomeFailed, delivery.OutcomeStuck} {
			outcomes.WithLabelValues(ch, o)
		}
	}
	return delivery.Hooks{
		Outcome: func(channel, outcome string, d time.Duration) {
			outcomes.WithLabelValues(channel, outcome).Inc()
			if outcome == delivery.OutcomeDelivered {
				handed.WithLabelValues(channel).Observe(d.Seconds())
			}
		},
	}
}
