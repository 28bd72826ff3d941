package lifecycle_test

import (
	"context"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/lifecycle"
	"github.com/d365portal/connector/internal/redistest"
)

// TestNothingToDoIsRecordedNotCounted: a Send or Expire that finds nothing
// to do (redeemed since, or sent before a crash) is recorded done, counted
// as skipped, and not reported to Metrics as sent or expired.
func TestNothingToDoIsRecordedNotCounted(t *testing.T) {
	srv := redistest.Start(t)
	t0 := time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC)
	clock := newClock(t0)
	st := newStore(clock)
	st.add(lifecycle.Invitation{ID: invID(1), Portal: partners.Name, ExpiresAt: t0.Add(3 * day)})
	st.add(lifecycle.Invitation{ID: invID(2), Portal: partners.Name, ExpiresAt: t0.Add(-time.Hour)})
	calls := 0
	r := &replica{name: "a", store: st, hook: func(context.Context, lifecycle.Invitation, int) error {
		calls++
		return lifecycle.ErrNothingToDo
	}}
	m := &metrics{}
	s := newScheduler(t, srv, clock, r, m, partners)
	rep, err := s.Tick(context.Background())
	if err != nil || rep.Skipped != 2 || rep.RemindersSent != 0 || rep.Expired != 0 || rep.RemindersFailed != 0 || rep.ExpiryFailed != 0 {
		t.Fatalf("first tick: %+v, %v; want 2 skipped and nothing else", rep, err)
	}
	if m.get("sent partners 0") != 0 || m.get("expired partners") != 0 || m.get("failed partners 0") != 0 || m.get("expiry failed partners") != 0 {
		t.Fatalf("metrics counted a skipped action")
	}
	rep, err = s.Tick(context.Background())
	if err != nil || rep.Done != 2 || rep.Skipped != 0 || calls != 2 {
		t.Fatalf("second tick: %+v, %v, %d calls; want both recorded done and no new call", rep, err, calls)
	}
}
