package sync

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/redisconn"
	"github.com/d365portal/connector/internal/redistest"
)

// With MinAckedReplicas a webhook is answered 202 only once a replica holds
// its entry; with the replica gone the same webhook (a duplicate whose first
// copy may be on the primary only) and a new enqueue fail, so Dataverse
// sends them again, and once the replica is back the retry is acknowledged.
func TestEnqueueAcknowledgedByReplica(t *testing.T) {
	g := redistest.StartSentinels(t, redistest.SentinelOptions{Sentinels: 1})
	rdb, err := redisconn.New(redisconn.Options{
		URL:      "redis://" + g.MasterName + "/0",
		Sentinel: redisconn.Sentinel{MasterName: g.MasterName, Addrs: g.SentinelAddrs},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	dv := newFakeDV()
	r := &rig{rdb: rdb, dv: dv, inv: newFakeInviter(dv)}
	// WAIT asks the replica at once; the bound only matters on a loaded
	// machine, where a short one would turn the first 202 into a 503.
	i := r.intake(t, func(c *Config) { c.MinAckedReplicas, c.AckTimeout = 1, 2*time.Second })
	h := i.WebhookHandler()
	body := sample(t, "update_requested.json")
	const target = "/hooks/dataverse?code=s3cret"
	replica := g.Nodes[1]
	onReplica := func() int64 {
		n, err := replica.Client(t).XLen(context.Background(), i.keys.stream).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	if w := post(h, target, body, nil); w.Code != 202 {
		t.Fatalf("first webhook: %d %s", w.Code, w.Body)
	}
	if n := onReplica(); n != 1 {
		t.Fatalf("entries on the replica right after the 202: %d, want 1", n)
	}

	replica.Stop()
	if w := post(h, target, body, nil); w.Code != 503 {
		t.Errorf("duplicate with no replica to acknowledge: %d %s, want 503", w.Code, w.Body)
	}
	_, err = i.Enqueue(context.Background(), Request{ContactID: createContact, Kind: KindInvite, Source: "test", DedupeKey: "other"})
	if !errors.Is(err, ErrNotReplicated) {
		t.Errorf("new enqueue with no replica: %v, want ErrNotReplicated", err)
	}

	// A worker's contact lock is not taken without a replica either, and
	// is not left behind.
	lockKey := i.keys.contactLock + createContact
	if _, err := i.locker.Lock(context.Background(), createContact, time.Second); !errors.Is(err, ErrNotReplicated) {
		t.Errorf("contact lock with no replica: %v, want ErrNotReplicated", err)
	}
	if n, err := rdb.Exists(context.Background(), lockKey).Result(); err != nil || n != 0 {
		t.Errorf("unacknowledged lock left in Redis: %d %v", n, err)
	}

	replica.Restart(t) // empty: it resyncs from the primary
	var code int
	waitFor(t, "the duplicate to be acknowledged after the replica came back", 30*time.Second, func() bool {
		code = post(h, target, body, nil).Code
		return code == 200
	})
	if got := len(queued(t, i)); got != 2 {
		t.Errorf("entries on the primary: %d, want 2 (the first webhook and the unacknowledged enqueue)", got)
	}
	if n := onReplica(); n != 2 {
		t.Errorf("entries on the replica after the acknowledged duplicate: %d, want 2", n)
	}
	unlock, err := i.locker.Lock(context.Background(), createContact, 5*time.Second)
	if err != nil {
		t.Fatalf("contact lock with the replica back: %v", err)
	}
	defer unlock()
	if n, err := replica.Client(t).Exists(context.Background(), lockKey).Result(); err != nil || n != 1 {
		t.Errorf("lock on the replica once taken: %d %v, want 1", n, err)
	}
}
