package sync

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/invite"
)

// TestMiniredis runs the queue against miniredis, the in-process server
// `connector dev` uses: dedupe, retries, dead letters, reclaim, heartbeat,
// the poll lock and the locker all need its Lua and stream commands.
func TestMiniredis(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	dv := newFakeDV()
	inv := newFakeInviter(dv)
	r := &rig{rdb: rdb, dv: dv, inv: inv}
	i := r.intake(t, func(c *Config) { c.MaxAttempts = 2; c.Consumer = "dev" })
	ctx := context.Background()
	flaky, broken, stale, slow := contactID(1), contactID(2), contactID(3), contactID(4)
	for _, id := range []string{flaky, broken, stale, slow} {
		dv.set(id, testCols.Requested, "P", "")
	}
	release := make(chan struct{})
	inv.errFor = func(n int, req invite.InviteRequest) error {
		switch {
		case req.ContactID == broken, req.ContactID == flaky && n == 1:
			return fmt.Errorf("create invitation: %w", &dataverse.Error{StatusCode: 503})
		case req.ContactID == slow:
			<-release
		}
		return nil
	}
	for _, id := range []string{flaky, broken} {
		if _, err := i.Enqueue(ctx, Request{ContactID: id, Source: "dev", DedupeKey: "k" + id}); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := i.Enqueue(ctx, Request{ContactID: flaky, Source: "dev", DedupeKey: "k" + flaky}); ok || err != nil {
		t.Fatalf("duplicate enqueued: %v %v", ok, err)
	}
	// A message a crashed consumer took.
	if err := i.ensureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := i.Enqueue(ctx, Request{ContactID: stale, Source: "dev"}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: groupName, Consumer: "crashed",
		Streams: []string{i.keys.stream, ">"}, Count: 3}).Err(); err != nil {
		t.Fatal(err)
	}
	start(t, i)
	if _, err := i.Enqueue(ctx, Request{ContactID: slow, Source: "dev"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "sent, dead-lettered and reclaimed", 10*time.Second, func() bool {
		s, err := i.Stats(ctx)
		return err == nil && dv.status(flaky) == testCols.Sent && dv.status(stale) == testCols.Sent &&
			s.DeadLetters == 1 && s.Retrying == 0
	})
	time.Sleep(3 * i.cfg.Lease) // the slow one stays with its worker
	close(release)
	waitFor(t, "drained", 5*time.Second, func() bool {
		s, _ := i.Stats(ctx)
		return dv.status(slow) == testCols.Sent && s.Depth == 0 && s.Pending == 0
	})
	calls := map[string]int{}
	for _, c := range inv.invites() {
		calls[c.ContactID]++
	}
	if calls[flaky] != 2 || calls[broken] != 2 || calls[stale] != 1 || calls[slow] != 1 {
		t.Errorf("Invite calls %v", calls)
	}
	if _, err := i.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	unlock, err := NewLocker(rdb, "dev:").Lock(ctx, "a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	i.dropIdleConsumers(ctx, time.Millisecond)
}
