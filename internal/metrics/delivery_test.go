package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestDeliveryHooks(t *testing.T) {
	m := New()
	h := m.DeliveryHooks()
	h.Outcome("dataverse", "delivered", 90*time.Second)
	h.Outcome("dataverse", "stuck", 31*time.Minute)
	h.Outcome("smtp", "failed", time.Second)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`connector_invitation_emails_total{channel="dataverse",outcome="delivered"} 1`,
		`connector_invitation_emails_total{channel="dataverse",outcome="stuck"} 1`,
		`connector_invitation_emails_total{channel="smtp",outcome="failed"} 1`,
		`connector_invitation_emails_total{channel="smtp",outcome="delivered"} 0`,
		`connector_invitation_email_delivery_seconds_bucket{channel="dataverse",le="60"} 0`,
		`connector_invitation_email_delivery_seconds_bucket{channel="dataverse",le="120"} 1`,
		`connector_invitation_email_delivery_seconds_count{channel="dataverse"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(string(body), `connector_invitation_email_delivery_seconds_count{channel="smtp"}`) {
		t.Error("a failed email was observed as delivered")
	}
}
