package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLifecycleMetrics(t *testing.T) {
	m := New()
	lm := m.Lifecycle()
	lm.ReminderSent("Partners", 0)
	lm.ReminderSent("Partners", 0)
	lm.ReminderFailed("Partners", 1)
	lm.InvitationExpired("Partners")
	lm.ExpiryFailed("Customers")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`connector_invitation_reminders_total{outcome="sent",portal="Partners",reminder="0"} 2`,
		`connector_invitation_reminders_total{outcome="failed",portal="Partners",reminder="1"} 1`,
		`connector_invitation_expiries_total{outcome="expired",portal="Partners"} 1`,
		`connector_invitation_expiries_total{outcome="failed",portal="Customers"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}
