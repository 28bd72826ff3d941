package delivery

import (
	"context"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/redistest"
)

// A guard lengthens the minute a reservation counts in; portals without
// senders are not paced.
func TestPortalPacerGuard(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	sender := "queue:9b0e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f"
	pp := NewPortalPacer(NewPacer(rdb, &PacerOptions{KeyPrefix: "g:", Clock: func() time.Time { return now }, Guard: 5 * time.Second}),
		map[string][]Sender{"Partners": {{Name: sender, PerMinute: 2, PerDay: 100}}, "Open": nil})
	ctx := context.Background()
	for k := range 2 {
		s, nb, err := pp.Reserve(ctx, "partners")
		if err != nil || s != sender || !nb.IsZero() {
			t.Fatalf("reservation %d: %q %v %v", k, s, nb, err)
		}
	}
	s, nb, err := pp.Reserve(ctx, "Partners")
	if err != nil || s != "" || !nb.Equal(now.Add(65*time.Second)) {
		t.Fatalf("third: %q not before %v (%v), want none until a minute and the guard", s, nb, err)
	}
	now = now.Add(64 * time.Second)
	if s, _, _ := pp.Reserve(ctx, "Partners"); s != "" {
		t.Errorf("reserved %q inside the guard", s)
	}
	now = now.Add(time.Second)
	if s, _, _ := pp.Reserve(ctx, "Partners"); s != sender {
		t.Errorf("after the guard: %q", s)
	}
	if s, nb, err := pp.Reserve(ctx, "Open"); s != "" || !nb.IsZero() || err != nil {
		t.Errorf("portal without senders: %q %v %v, want not paced", s, nb, err)
	}
}
