package sync

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPollOnce(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.dv.set(contactID(1), testCols.Requested, "P", "Partners")
	r.dv.set(contactID(2), testCols.Sent, "P", "")
	r.dv.set(contactID(3), 0, "", "")
	i := r.intake(t, func(c *Config) { c.Poll = PollConfig{Enabled: true, Schedule: "@every 1h"} })

	// No delta link yet: the filtered query, then a change-tracking baseline.
	n, err := i.PollOnce(ctx)
	if err != nil || n != 1 {
		t.Fatalf("first poll: %d, %v", n, err)
	}
	if r.dv.count("query") != 1 || r.dv.count("delta") != 1 {
		t.Errorf("first poll: %d queries, %d deltas", r.dv.count("query"), r.dv.count("delta"))
	}
	if r.dv.queries[0] != "pinv_portalinvitestatus eq 100000000" {
		t.Errorf("filter %q", r.dv.queries[0])
	}
	jobs := queued(t, i)
	if len(jobs) != 1 || jobs[0].ContactID != contactID(1) || jobs[0].Source != "poll" ||
		jobs[0].Portal != "P" || jobs[0].InitiatingUserID == "" || jobs[0].DedupeKey == "" {
		t.Fatalf("jobs %+v", jobs)
	}

	// Nothing changed: one Delta request, nothing queued.
	n, err = i.PollOnce(ctx)
	if err != nil || n != 0 || r.dv.count("delta") != 2 || r.dv.count("query") != 1 || r.dv.count("retrieve") != 0 {
		t.Fatalf("idle poll: %d, %v; calls %v", n, err, r.dv.calls)
	}

	// A new click and an unrelated change: only the click is queued.
	r.dv.set(contactID(4), testCols.Requested, "", "")
	r.dv.set(contactID(2), testCols.Redeemed, "P", "")
	if n, err = i.PollOnce(ctx); err != nil || n != 1 {
		t.Fatalf("delta poll: %d, %v", n, err)
	}
	// Contact 1 still Requested and unchanged: never queued twice.
	if got := len(queued(t, i)); got != 2 {
		t.Errorf("%d queued, want 2", got)
	}

	// An expired token falls back to the full query and a new baseline.
	r.dv.expireLinks = true
	if n, err = i.PollOnce(ctx); err != nil || n != 0 {
		t.Fatalf("expired: %d, %v", n, err)
	}
	r.dv.expireLinks = false
	if r.dv.count("query") != 2 {
		t.Errorf("expired token: %d queries, want 2", r.dv.count("query"))
	}
	if got := len(queued(t, i)); got != 2 {
		t.Errorf("after resync %d queued, want 2 (unchanged rows deduped)", got)
	}
}

func TestPollLock(t *testing.T) {
	r := newRig(t)
	a := r.intake(t, func(c *Config) { c.Consumer = "a" })
	b := r.intake(t, func(c *Config) { c.Consumer = "b" })
	ctx := context.Background()
	token, ok, err := tryLock(ctx, r.rdb, a.keys.pollLock, time.Minute)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if _, err := b.PollOnce(ctx); !errors.Is(err, ErrPollBusy) {
		t.Fatalf("PollOnce while locked: %v", err)
	}
	if r.dv.count("delta")+r.dv.count("query") != 0 {
		t.Error("a replica without the lock read Dataverse")
	}
	if err := unlockKey(ctx, r.rdb, a.keys.pollLock, token); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// Released after the poll.
	if n, _ := r.rdb.Exists(ctx, a.keys.pollLock).Result(); n != 0 {
		t.Error("poll lock not released")
	}
	// A stale token cannot release someone else's lock.
	token2, _, _ := tryLock(ctx, r.rdb, a.keys.pollLock, time.Minute)
	_ = unlockKey(ctx, r.rdb, a.keys.pollLock, token)
	if v, _ := r.rdb.Get(ctx, a.keys.pollLock).Result(); v != token2 {
		t.Error("stale token released the lock")
	}
}

func TestScheduledPolling(t *testing.T) {
	r := newRig(t)
	for k := range 5 {
		r.dv.set(contactID(k), testCols.Requested, "P", "")
	}
	i := r.intake(t, func(c *Config) {
		c.Webhook.Enabled = false
		c.Poll = PollConfig{Enabled: true, Schedule: "@every 1s"}
	})
	start(t, i)
	waitFor(t, "all sent", 15*time.Second, func() bool {
		for k := range 5 {
			if r.dv.status(contactID(k)) != testCols.Sent {
				return false
			}
		}
		return true
	})
	if n := len(r.inv.invites()); n != 5 {
		t.Errorf("%d Invite calls", n)
	}
}
