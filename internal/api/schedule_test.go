package api

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/bulk"
)

func TestSchedule(t *testing.T) {
	full := bulk.Sender{Name: "queue:9b0e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f", PerMinute: 30, PerDay: 100, SentToday: 100,
		WindowStart: testNow.Add(-time.Hour), Queued: 3}
	free := bulk.Sender{Name: "systemuser:1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", PerMinute: 30, PerDay: 100, SentToday: 7,
		WindowStart: testNow.Add(-time.Hour), Queued: 2}
	fail := false
	h := newHarness(t, happyInvites(t), func(c *Config) {
		c.Schedule = func(context.Context) (bulk.Schedule, error) {
			if fail {
				return bulk.Schedule{}, errors.New("redis: connection refused")
			}
			return bulk.NewSchedule(testNow, []bulk.Sender{full, free}), nil
		}
	})
	r := h.do(http.MethodGet, "/api/v1/schedule", "")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	senders, _ := r.body["senders"].([]any)
	if len(senders) != 2 {
		t.Fatalf("senders %v", r.body)
	}
	a, b := senders[0].(map[string]any), senders[1].(map[string]any)
	if a["sender"] != full.Name || a["queued"] != 3.0 || a["sent_today"] != 100.0 || a["per_day"] != 100.0 {
		t.Errorf("first sender %v", a)
	}
	// The full sender's window ends 23 hours on, after its 3 queued.
	if want := testNow.Add(23 * time.Hour).Format(time.RFC3339); a["next_free"] == nil || a["next_free"].(string) < want {
		t.Errorf("full sender next free %v, want at or after %s", a["next_free"], want)
	}
	if b["sent_today"] != 7.0 || b["next_free"] == nil || b["next_free"].(string) >= testNow.Add(time.Hour).Format(time.RFC3339) {
		t.Errorf("second sender %v, want a slot within the hour", b)
	}
	d := loadDoc(t)
	var v any = r.body
	if errs := validate(d, map[string]any{"$ref": "#/components/schemas/Schedule"}, v, "#", false); len(errs) > 0 {
		t.Errorf("body does not match the Schedule schema: %v", errs)
	}

	if r := h.do(http.MethodGet, "/api/v1/schedule", "", "Authorization", ""); r.status != http.StatusUnauthorized {
		t.Errorf("without a key: status %d", r.status)
	}
	fail = true
	if r := h.do(http.MethodGet, "/api/v1/schedule", ""); r.status != http.StatusInternalServerError {
		t.Errorf("failing source: status %d, want 500", r.status)
	}
}
