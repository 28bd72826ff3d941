package lifecycle

import (
	"context"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/redistest"
)

// TestClaimLifecycle walks one action's keys: taken, held, lapsed and
// retaken, completed by the first holder after it lost the claim (recorded
// done anyway, the second holder's claim untouched), then done for all.
func TestClaimLifecycle(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	const lease = time.Minute
	c := &claims{rdb: rdb, prefix: "t:lifecycle:", lease: lease}
	t0 := time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC)
	a := action{invitation: "AB12CD34-0000-0000-0000-000000000000", expires: t0.Add(48 * time.Hour), index: 1}
	claimKey, doneKey := c.keys(a)
	if want := "t:lifecycle:{ab12cd34-0000-0000-0000-000000000000}:reminder:1:1749027600000"; claimKey != want+":claim" || doneKey != want+":done" {
		t.Fatalf("keys %s, %s; want %s:claim and :done", claimKey, doneKey, want)
	}
	first, res, err := c.claim(ctx, a, t0)
	if err != nil || res != claimTaken {
		t.Fatalf("first claim: %v, %v; want taken", res, err)
	}
	if ttl := rdb.PTTL(ctx, claimKey).Val(); ttl <= 0 || ttl > lease {
		t.Fatalf("claim TTL %v; want within the lease %v", ttl, lease)
	}
	if _, res, _ := c.claim(ctx, a, t0.Add(lease-time.Millisecond)); res != claimHeld {
		t.Fatalf("claim inside the lease: %v; want held", res)
	}
	second, res, err := c.claim(ctx, a, t0.Add(lease))
	if err != nil || res != claimTaken {
		t.Fatalf("claim after the lease: %v, %v; want taken", res, err)
	}
	held, err := c.complete(ctx, a, first, t0.Add(lease), time.Hour)
	if err != nil || held {
		t.Fatalf("late completion by the first holder: held %v, %v; want not held", held, err)
	}
	if v := rdb.Get(ctx, claimKey).Val(); len(v) < len(second) || v[:len(second)] != second {
		t.Fatalf("claim now %q; want the second holder's", v)
	}
	if _, res, _ := c.claim(ctx, a, t0.Add(10*lease)); res != claimDone {
		t.Fatalf("claim after completion: %v; want done", res)
	}
	held, err = c.complete(ctx, a, second, t0.Add(lease), time.Hour)
	if err != nil || !held || rdb.Exists(ctx, claimKey).Val() != 0 {
		t.Fatalf("completion by the holder: held %v, %v, claim exists %d", held, err, rdb.Exists(ctx, claimKey).Val())
	}
	if ttl := rdb.PTTL(ctx, doneKey).Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("done TTL %v; want within the keep of 1h", ttl)
	}
	// The expiry action of the same invitation is separate.
	if _, res, _ := c.claim(ctx, action{invitation: a.invitation, expires: a.expires, index: -1}, t0); res != claimTaken {
		t.Fatalf("expiry claim: %v; want taken", res)
	}
}

func TestDueReminder(t *testing.T) {
	const day = 24 * time.Hour
	p := Portal{ExpiresAfter: 14 * day, Reminders: []time.Duration{7 * day, day}}
	for _, tc := range []struct {
		left time.Duration
		want int
	}{
		{8 * day, -1},
		{7*day + time.Millisecond, -1},
		{7 * day, 0},
		{2 * day, 0},
		{day, 1},
		{time.Hour, 1},
	} {
		got, ok := p.dueReminder(tc.left)
		if (tc.want < 0 && ok) || (tc.want >= 0 && got != tc.want) {
			t.Errorf("left %v: %d, %v; want %d", tc.left, got, ok, tc.want)
		}
	}
	// Order in the list does not matter: the shortest due one wins.
	q := Portal{ExpiresAfter: 14 * day, Reminders: []time.Duration{day, 7 * day, 3 * day}}
	if got, _ := q.dueReminder(2 * day); got != 2 {
		t.Errorf("reminders [1d 7d 3d] with 2d left: %d; want 2 (3d)", got)
	}
	if q.horizon() != 7*day || (Portal{}).horizon() != 0 {
		t.Errorf("horizon %v; want 7d", q.horizon())
	}
}
