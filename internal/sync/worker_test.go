package sync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/invite"
)

func contactID(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

func start(t *testing.T, i *Intake) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := i.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = i.Shutdown(sctx)
		cancel()
	})
}

func TestWorkerInvitesOncePerClick(t *testing.T) {
	r := newRig(t)
	var processed stdsync.Map
	i := r.intake(t, func(c *Config) {
		c.Workers = 4
		c.Hooks.Processed = func(o string, _ time.Duration) {
			v, _ := processed.LoadOrStore(o, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
		}
	})
	ctx := context.Background()
	const n = 20
	for k := range n {
		id := contactID(k)
		r.dv.set(id, testCols.Requested, "", "Partners, Customers")
		// The same click seen four ways: two deliveries of one event, a
		// second event and the poller.
		for _, key := range []string{"webhook:" + id + ":op1", "webhook:" + id + ":op1", "webhook:" + id + ":op2", "poll:" + id + ":7"} {
			if _, err := i.Enqueue(ctx, Request{ContactID: id, Source: "test", DedupeKey: key, InitiatingUserID: "u"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := streamLen(t, i); got != 3*n {
		t.Fatalf("stream holds %d, want %d (exact duplicates dropped)", got, 3*n)
	}
	start(t, i)
	waitFor(t, "queue drained", 10*time.Second, func() bool {
		s, err := i.Stats(ctx)
		return err == nil && s.Depth == 0 && s.Pending == 0
	})
	calls := r.inv.invites()
	seen := map[string]int{}
	for _, c := range calls {
		seen[c.ContactID]++
		if c.Portal != "Contoso Partner Portal" || strings.Join(c.Roles, ",") != "Partners,Customers" || c.InitiatingUserID != "u" {
			t.Errorf("invite request %+v", c)
		}
	}
	if len(seen) != n || len(calls) != n {
		t.Errorf("%d Invite calls for %d contacts, want %d each once", len(calls), len(seen), n)
	}
	for k := range n {
		if st := r.dv.status(contactID(k)); st != testCols.Sent {
			t.Errorf("contact %d status %d", k, st)
		}
	}
	sent, _ := processed.Load(OutcomeSent)
	skipped, _ := processed.Load(OutcomeSkipped)
	if sent.(*atomic.Int64).Load() != n || skipped.(*atomic.Int64).Load() != 2*n {
		t.Errorf("outcomes: sent %v skipped %v", sent, skipped)
	}
}

func TestWorkerRetryThenSuccess(t *testing.T) {
	r := newRig(t)
	id := contactID(1)
	r.dv.set(id, testCols.Requested, "P", "")
	r.inv.errFor = func(n int, _ invite.InviteRequest) error {
		if n < 3 {
			return fmt.Errorf("create invitation: %w", &dataverse.Error{StatusCode: 503, Message: "unavailable"})
		}
		return nil
	}
	var retries atomic.Int64
	i := r.intake(t, func(c *Config) {
		c.MaxAttempts = 5
		c.Hooks.Processed = func(o string, _ time.Duration) {
			if o == OutcomeRetry {
				retries.Add(1)
			}
		}
	})
	if _, err := i.Enqueue(context.Background(), Request{ContactID: id, Source: "test"}); err != nil {
		t.Fatal(err)
	}
	start(t, i)
	waitFor(t, "contact sent", 10*time.Second, func() bool { return r.dv.status(id) == testCols.Sent })
	waitFor(t, "queue empty", 5*time.Second, func() bool {
		s, _ := i.Stats(context.Background())
		return s.Depth == 0 && s.Retrying == 0
	})
	if got := len(r.inv.invites()); got != 3 {
		t.Errorf("%d Invite calls, want 3", got)
	}
	if retries.Load() != 2 {
		t.Errorf("%d retries, want 2", retries.Load())
	}
	if s, _ := i.Stats(context.Background()); s.DeadLetters != 0 {
		t.Errorf("dead letters %d", s.DeadLetters)
	}
}

func TestWorkerGivesUp(t *testing.T) {
	r := newRig(t)
	transient, permanent, dvPermanent, already := contactID(1), contactID(2), contactID(3), contactID(4)
	for _, id := range []string{transient, permanent, dvPermanent, already} {
		r.dv.set(id, testCols.Requested, "P", "")
	}
	r.inv.errFor = func(_ int, req invite.InviteRequest) error {
		switch req.ContactID {
		case transient:
			return fmt.Errorf("send email: %w", &dataverse.Error{StatusCode: 429, Message: "slow down"})
		case permanent:
			return fmt.Errorf("invite contact %s: %w", req.ContactID, invite.ErrNoEmail)
		case dvPermanent:
			return fmt.Errorf("create invitation: %w", &dataverse.Error{StatusCode: 400, Code: "0x80044331", Message: "A validation error occurred."})
		case already:
			return fmt.Errorf("invite contact %s: %w", req.ContactID, invite.ErrAlreadyPortalUser)
		}
		return nil
	}
	i := r.intake(t, func(c *Config) { c.MaxAttempts = 3 })
	for _, id := range []string{transient, permanent, dvPermanent, already} {
		if _, err := i.Enqueue(context.Background(), Request{ContactID: id, Source: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	start(t, i)
	waitFor(t, "three dead letters", 10*time.Second, func() bool {
		s, _ := i.Stats(context.Background())
		return s.DeadLetters == 3 && s.Depth == 0 && s.Retrying == 0
	})
	if got := r.inv.reason(transient); !strings.HasPrefix(got, "Invitation not sent after 3 attempts: ") || !strings.Contains(got, "429") {
		t.Errorf("transient reason %q", got)
	}
	if got := r.inv.reason(permanent); got != "Invitation not sent: The contact has no email address." {
		t.Errorf("permanent reason %q", got)
	}
	if got := r.inv.reason(dvPermanent); !strings.Contains(got, "validation error") {
		t.Errorf("dataverse permanent reason %q", got)
	}
	if got := r.inv.reason(already); got != "" {
		t.Errorf("already a portal user was marked failed: %q", got)
	}
	calls := map[string]int{}
	for _, c := range r.inv.invites() {
		calls[c.ContactID]++
	}
	if calls[transient] != 3 || calls[permanent] != 1 || calls[dvPermanent] != 1 || calls[already] != 1 {
		t.Errorf("Invite calls %v", calls)
	}
	dl, err := i.DeadLetters(context.Background(), 10)
	if err != nil || len(dl) != 3 {
		t.Fatalf("dead letters %+v, %v", dl, err)
	}
	for _, d := range dl {
		if d.Reason == "" || d.ContactID == "" || d.Request.Source != "test" {
			t.Errorf("dead letter %+v", d)
		}
	}
}

func TestWorkerMarkFailedRetried(t *testing.T) {
	// When the Failed write-back itself fails, the message stays pending and
	// is reclaimed after the lease; nothing is dead-lettered until the
	// contact shows the failure.
	r := newRig(t)
	id := contactID(1)
	r.dv.set(id, testCols.Requested, "P", "")
	r.inv.errFor = func(int, invite.InviteRequest) error { return invite.ErrUnknownPortal }
	r.inv.markErr = errors.New("dataverse down")
	i := r.intake(t, nil)
	if _, err := i.Enqueue(context.Background(), Request{ContactID: id, Source: "test"}); err != nil {
		t.Fatal(err)
	}
	start(t, i)
	waitFor(t, "two attempts", 10*time.Second, func() bool { return len(r.inv.invites()) >= 2 })
	if s, _ := i.Stats(context.Background()); s.DeadLetters != 0 {
		t.Fatalf("dead-lettered before the contact was marked: %+v", s)
	}
	r.inv.mu.Lock()
	r.inv.markErr = nil
	r.inv.mu.Unlock()
	waitFor(t, "dead letter", 10*time.Second, func() bool {
		s, _ := i.Stats(context.Background())
		return s.DeadLetters == 1 && s.Depth == 0
	})
	if r.dv.status(id) != testCols.Failed {
		t.Errorf("status %d", r.dv.status(id))
	}
}

func TestReclaimFromDeadConsumer(t *testing.T) {
	r := newRig(t)
	id := contactID(9)
	r.dv.set(id, testCols.Requested, "P", "")
	i := r.intake(t, func(c *Config) { c.Consumer = "survivor" })
	ctx := context.Background()
	if _, err := i.Enqueue(ctx, Request{ContactID: id, Source: "test"}); err != nil {
		t.Fatal(err)
	}
	// A consumer reads the message and dies without acknowledging it.
	if err := i.ensureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := r.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: groupName, Consumer: "crashed", Streams: []string{i.keys.stream, ">"}, Count: 1}).Result()
	if err != nil || len(res[0].Messages) != 1 {
		t.Fatalf("read: %v %v", res, err)
	}
	if s, _ := i.Stats(ctx); s.Pending != 1 || s.Depth != 1 {
		t.Fatalf("stats %+v", s)
	}
	start(t, i)
	waitFor(t, "reclaimed and sent", 10*time.Second, func() bool { return r.dv.status(id) == testCols.Sent })
	waitFor(t, "acknowledged", 5*time.Second, func() bool {
		s, _ := i.Stats(ctx)
		return s.Pending == 0 && s.Depth == 0
	})
	if n := len(r.inv.invites()); n != 1 {
		t.Errorf("%d Invite calls", n)
	}
}

func TestSlowWorkIsNotReclaimed(t *testing.T) {
	// A message worked on for several leases stays with its worker: the
	// heartbeat keeps it fresh, so no second replica starts on it.
	r := newRig(t)
	id := contactID(5)
	r.dv.set(id, testCols.Requested, "P", "")
	r.inv.block = make(chan struct{})
	a := r.intake(t, func(c *Config) { c.Consumer = "a"; c.Workers = 1 })
	b := r.intake(t, func(c *Config) { c.Consumer = "b"; c.Workers = 1 })
	if _, err := a.Enqueue(context.Background(), Request{ContactID: id, Source: "test"}); err != nil {
		t.Fatal(err)
	}
	start(t, a)
	waitFor(t, "a busy", 5*time.Second, func() bool { return len(r.inv.invites()) == 1 })
	start(t, b)
	time.Sleep(4 * a.cfg.Lease)
	close(r.inv.block)
	waitFor(t, "sent", 5*time.Second, func() bool { return r.dv.status(id) == testCols.Sent })
	waitFor(t, "drained", 5*time.Second, func() bool {
		s, _ := a.Stats(context.Background())
		return s.Depth == 0 && s.Pending == 0
	})
	if n := len(r.inv.invites()); n != 1 {
		t.Errorf("%d Invite calls, want 1", n)
	}
}

func TestShutdownFinishesInFlight(t *testing.T) {
	r := newRig(t)
	id := contactID(3)
	r.dv.set(id, testCols.Requested, "P", "")
	r.inv.block = make(chan struct{})
	i := r.intake(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := i.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := i.Enqueue(ctx, Request{ContactID: id, Source: "test"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "in flight", 5*time.Second, func() bool { return len(r.inv.invites()) == 1 })
	done := make(chan error, 1)
	go func() { done <- i.Shutdown(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with work in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := i.Enqueue(ctx, Request{ContactID: contactID(4), Source: "test"}); !errors.Is(err, ErrStopping) {
		t.Errorf("Enqueue during shutdown: %v", err)
	}
	close(r.inv.block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s, _ := i.Stats(context.Background())
	if r.dv.status(id) != testCols.Sent || s.Depth != 0 || s.Pending != 0 {
		t.Errorf("after shutdown: status %d, stats %+v", r.dv.status(id), s)
	}
}

func TestCrashLeavesWorkPending(t *testing.T) {
	r := newRig(t)
	id := contactID(7)
	r.dv.set(id, testCols.Requested, "P", "")
	r.inv.block = make(chan struct{})
	crashed := r.intake(t, func(c *Config) { c.Consumer = "crashed" })
	ctx, crash := context.WithCancel(context.Background())
	if err := crashed.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := crashed.Enqueue(ctx, Request{ContactID: id, Source: "test"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "in flight", 5*time.Second, func() bool { return len(r.inv.invites()) == 1 })
	crash() // no Shutdown: the worker's context ends mid-Invite
	waitFor(t, "crashed instance stopped", 5*time.Second, func() bool {
		select {
		case <-crashed.done:
			return true
		default:
			return false
		}
	})
	s, _ := crashed.Stats(context.Background())
	if s.Pending != 1 || r.dv.status(id) != testCols.Requested {
		t.Fatalf("after crash: %+v status %d", s, r.dv.status(id))
	}
	r.inv.mu.Lock()
	r.inv.block = nil
	r.inv.mu.Unlock()
	start(t, r.intake(t, func(c *Config) { c.Consumer = "survivor" }))
	waitFor(t, "sent by the survivor", 10*time.Second, func() bool { return r.dv.status(id) == testCols.Sent })
	waitFor(t, "drained", 5*time.Second, func() bool {
		s, _ := crashed.Stats(context.Background())
		return s.Pending == 0 && s.Depth == 0
	})
}

func TestStats(t *testing.T) {
	r := newRig(t)
	now := time.Now()
	i := r.intake(t, func(c *Config) { c.Now = func() time.Time { return now } })
	ctx := context.Background()
	if s, err := i.Stats(ctx); err != nil || s != (QueueStats{}) {
		t.Fatalf("empty: %+v %v", s, err)
	}
	for k := range 3 {
		if _, err := i.Enqueue(ctx, Request{ContactID: contactID(k), Source: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Minute)
	s, err := i.Stats(ctx)
	if err != nil || s.Depth != 3 || s.Pending != 0 || s.OldestAge < 59*time.Second {
		t.Errorf("stats %+v %v", s, err)
	}
	if _, err := i.Enqueue(ctx, Request{ContactID: "nope", Source: "test"}); err == nil {
		t.Error("Enqueue accepted a bad contact id")
	}
}

func TestLocker(t *testing.T) {
	r := newRig(t)
	a, b := NewLocker(r.rdb, "t:"), NewLocker(r.rdb, "t:")
	ctx := context.Background()
	unlock, err := a.Lock(ctx, "invite:x", 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
	defer cancel()
	if _, err := b.Lock(short, "invite:x", time.Second); err == nil {
		t.Fatal("second holder got the lock (was the lease not kept alive?)")
	}
	if _, err := b.Lock(ctx, "invite:y", time.Second); err != nil {
		t.Fatalf("other key: %v", err)
	}
	got := make(chan time.Time, 1)
	waiterDone := make(chan struct{})
	go func() {
		defer close(waiterDone)
		u, err := b.Lock(ctx, "invite:x", time.Second)
		if err == nil {
			got <- time.Now()
			u()
		}
	}()
	time.Sleep(50 * time.Millisecond)
	released := time.Now()
	unlock()
	unlock() // idempotent
	select {
	case at := <-got:
		if at.Before(released) {
			t.Error("acquired before release")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("waiter never got the lock")
	}
	<-waiterDone
	if n, _ := r.rdb.Exists(ctx, "t:lock:invite:x").Result(); n != 0 {
		t.Error("lock key left behind")
	}
}

func TestRedisRestart(t *testing.T) {
	// Redis without persistence restarts empty: workers see NOGROUP,
	// recreate the consumer group and carry on. (Requests lost with the old
	// data are found again by the poller, which has lost its delta link and
	// runs the full query.)
	r := newRig(t)
	i := r.intake(t, nil)
	start(t, i)
	ctx := context.Background()
	first := contactID(1)
	r.dv.set(first, testCols.Requested, "P", "")
	if _, err := i.Enqueue(ctx, Request{ContactID: first, Source: "test"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first sent", 5*time.Second, func() bool { return r.dv.status(first) == testCols.Sent })
	r.srv.Restart(t)
	second := contactID(2)
	r.dv.set(second, testCols.Requested, "P", "")
	waitFor(t, "enqueue after restart", 10*time.Second, func() bool {
		_, err := i.Enqueue(ctx, Request{ContactID: second, Source: "test"})
		return err == nil
	})
	waitFor(t, "second sent", 10*time.Second, func() bool { return r.dv.status(second) == testCols.Sent })
}

func TestDropIdleConsumers(t *testing.T) {
	r := newRig(t)
	i := r.intake(t, func(c *Config) { c.Consumer = "me" })
	ctx := context.Background()
	if err := i.ensureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{contactID(1), contactID(2)} {
		if _, err := i.Enqueue(ctx, Request{ContactID: id, Source: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	read := func(consumer string) {
		if err := r.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: groupName, Consumer: consumer,
			Streams: []string{i.keys.stream, ">"}, Count: 1}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	read("gone-with-work") // holds one pending message
	r.rdb.XGroupCreateConsumer(ctx, i.keys.stream, groupName, "gone-empty")
	time.Sleep(20 * time.Millisecond)
	i.dropIdleConsumers(ctx, 10*time.Millisecond)
	cs, err := r.rdb.XInfoConsumers(ctx, i.keys.stream, groupName).Result()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "gone-with-work" {
		t.Errorf("consumers left: %v, want only the one holding work", names)
	}
}
