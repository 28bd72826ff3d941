package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestIntakeHooks(t *testing.T) {
	m := New()
	h := m.IntakeHooks()
	h.Webhook("accepted")
	h.Webhook("unauthorized")
	h.Enqueue("webhook", true)
	h.Enqueue("poll", false)
	h.Processed("sent", 1500*time.Millisecond)
	h.Poll(3, time.Second, nil)
	h.Poll(0, time.Second, errors.New("boom"))
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`connector_webhook_deliveries_total{outcome="accepted"} 1`,
		`connector_webhook_deliveries_total{outcome="unauthorized"} 1`,
		`connector_queue_enqueued_total{duplicate="false",source="webhook"} 1`,
		`connector_queue_enqueued_total{duplicate="true",source="poll"} 1`,
		`connector_queue_processed_seconds_count{outcome="sent"} 1`,
		`connector_poll_cycles_total{result="error"} 1`,
		`connector_poll_enqueued_total 3`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}
